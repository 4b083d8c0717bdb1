use super::*;

fn load(spec: &str, seed: u64) -> Trace {
    spec.parse::<TraceSpec>()
        .expect("valid spec")
        .load(seed, |_| Err(io::Error::other("no files in this test")))
        .expect("generated")
}

fn times(trace: &Trace) -> Vec<f64> {
    trace.arrivals.iter().map(|a| a.at).collect()
}

#[test]
fn bursts_and_spikes_are_exact() {
    assert_eq!(times(&load("burst:3", 1)), [0.0; 3]);
    assert_eq!(times(&load("burst:2@30s", 1)), [30.0; 2]);
    let spikes = load("spikes:100:2m:10m", 1);
    assert_eq!(spikes.arrivals.len(), 500, "at 0, 2, 4, 6, 8 minutes");
    assert_eq!(spikes.arrivals.last().map(|a| a.at), Some(480.0));
}

#[test]
fn rates_give_poisson_counts() {
    // Expected counts; a Poisson count of mean m lies within 4 sqrt(m) nearly always.
    for (spec, expected) in [
        ("steady:20:10m", 12_000.0),
        ("steady:20/s:10m", 12_000.0),
        ("ramp:0-50:10m", 15_000.0),
        ("ramp:0-50/s:10m", 15_000.0),
        ("ramp:50-0:10m", 15_000.0),
        ("wave:10:10:2m:10m", 6_000.0),
    ] {
        let n = load(spec, 42).arrivals.len() as f64;
        assert!(
            (n - expected).abs() < 4.0 * f64::sqrt(expected),
            "{spec}: {n} arrivals, expected about {expected}"
        );
    }
    let ramp = load("ramp:0-50:10m", 3);
    let first_half = ramp.arrivals.iter().filter(|a| a.at < 300.0).count();
    assert!(
        (3000..4500).contains(&first_half),
        "a quarter of a linear ramp's tasks come in its first half: {first_half}"
    );
}

#[test]
fn a_seed_replays_the_trace() {
    let spec = "ramp:0-50:1m+steady:2:1m+burst:10@5s";
    assert_eq!(load(spec, 9), load(spec, 9));
    assert_ne!(load(spec, 9), load(spec, 10));
    let joined = load(spec, 9);
    assert!(joined.arrivals.windows(2).all(|w| w[0].at <= w[1].at));
}

#[test]
fn rejects_malformed_specs() {
    for bad in [
        "burst",
        "burst:x",
        "ramp:0-50",
        "ramp:50:10m",
        "steady:-1:10m",
        "spikes:10:0s:1m",
        "wave:1:1:0:1m",
        "poisson:3",
        "csv:",
    ] {
        assert!(bad.parse::<TraceSpec>().is_err(), "{bad}");
    }
}

#[test]
fn csv_files_are_read_through_the_callers_reader_and_sorted() {
    let spec: TraceSpec = "csv:arrivals.csv".parse().expect("valid");
    let trace = spec
        .load(1, |path| {
            assert_eq!(path, Path::new("arrivals.csv"));
            Ok("t\n3\n1\n2\n".into())
        })
        .expect("read");
    assert_eq!(times(&trace), [1.0, 2.0, 3.0], "sorted by time");
    let broken = spec.load(1, |_| Ok("1\nx\n".into()));
    assert!(
        matches!(broken, Err(TraceError::Csv { line: 2, .. })),
        "{broken:?}"
    );
}
