use super::*;
use crate::simulate::report::Summary;

/// Checks what an XML parser would: tags nest and close, attribute values are
/// quoted, and `&` starts an entity. (No XML crate is in the tree.)
fn well_formed(xml: &str) -> Result<(), String> {
    let body = xml
        .strip_prefix(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        .ok_or("no XML declaration")?;
    let mut open: Vec<&str> = Vec::new();
    let mut rest = body;
    let mut roots = 0;
    while let Some(start) = rest.find('<') {
        check_text(&rest[..start])?;
        let end = rest[start..].find('>').ok_or("unclosed tag")? + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let expected = open.pop().ok_or(format!("</{name}> closes nothing"))?;
            if expected != name.trim() {
                return Err(format!("</{name}> closes <{expected}>"));
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, attributes) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("bad tag name {name:?}"));
        }
        check_attributes(attributes)?;
        if open.is_empty() {
            roots += 1;
        }
        if !self_closing {
            open.push(name);
        }
    }
    check_text(rest)?;
    match (open.as_slice(), roots) {
        ([], 1) => Ok(()),
        ([], n) => Err(format!("{n} root elements")),
        (left, _) => Err(format!("unclosed {left:?}")),
    }
}

fn check_text(text: &str) -> Result<(), String> {
    for (index, _) in text.match_indices('&') {
        let entity = &text[index..];
        let known = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"];
        if !known.iter().any(|k| entity.starts_with(k)) {
            return Err(format!("bare & in {text:?}"));
        }
    }
    Ok(())
}

fn check_attributes(mut text: &str) -> Result<(), String> {
    loop {
        text = text.trim_start();
        if text.is_empty() {
            return Ok(());
        }
        let (name, value) = text
            .split_once('=')
            .ok_or(format!("attribute without value in {text:?}"))?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("bad attribute name {name:?}"));
        }
        let value = value
            .strip_prefix('"')
            .ok_or(format!("unquoted value of {name}"))?;
        let close = value
            .find('"')
            .ok_or(format!("unterminated value of {name}"))?;
        let inner = &value[..close];
        if inner.contains('<') {
            return Err(format!("< in the value of {name}"));
        }
        check_text(inner)?;
        text = &value[close + 1..];
    }
}

fn outcome(label: &str, series: Vec<(f64, usize, usize)>) -> Outcome {
    Outcome {
        summary: Summary {
            label: label.into(),
            ..Default::default()
        },
        series: series
            .into_iter()
            .map(|(t, ready, replicas)| Point {
                t,
                ready,
                unacked: 0,
                replicas,
            })
            .collect(),
        decisions: Vec::new(),
    }
}

#[test]
fn the_checker_rejects_what_a_parser_would() {
    let head = r#"<?xml version="1.0" encoding="UTF-8"?>"#;
    assert!(well_formed(&format!("{head}<svg><g/></svg>")).is_ok());
    for bad in [
        "<svg><g></svg>",
        "<svg>a & b</svg>",
        "<svg x=1/>",
        "<svg/><svg/>",
        "<svg><text>1 < 2</text></svg>",
    ] {
        assert!(well_formed(&format!("{head}{bad}")).is_err(), "{bad}");
    }
}

#[test]
fn renders_a_well_formed_chart_with_a_line_per_policy() {
    let outcomes = [
        outcome(
            "backlog-target",
            vec![(0.0, 0, 0), (1.0, 2000, 0), (2.0, 1500, 50), (3.0, 0, 50)],
        ),
        outcome(
            "keda <target 10> & \"min\" 0",
            vec![(0.0, 0, 0), (1.0, 2000, 1), (4.0, 0, 5)],
        ),
    ];
    let svg = render("burst:2000 & co", "service const:1s", &outcomes);
    well_formed(&svg).expect("well-formed");
    assert_eq!(
        svg.matches("<path ").count(),
        4,
        "two panels x two policies"
    );
    assert!(svg.contains("burst:2000 &amp; co"));
    assert!(svg.contains("keda &lt;target 10&gt; &amp; &quot;min&quot; 0"));
    assert!(svg.contains(">backlog (ready messages)<"));
    assert!(svg.contains(">time (s)<"));
}

#[test]
fn steps_only_where_values_change() {
    let series = outcome(
        "a",
        vec![(0.0, 5, 1), (1.0, 5, 1), (2.0, 3, 1), (3.0, 3, 1)],
    )
    .series;
    let d = step_path(&series, &|t| t * 10.0, &|v| v as f64, |p| p.ready);
    assert_eq!(d, "M0.0,5.0H20.0V3.0H30.0");
}

#[test]
fn axes_tick_in_one_two_five_steps() {
    for (highest, step, top) in [
        (2000.0, 500.0, 2000.0),
        (47.0, 10.0, 50.0),
        (50.0, 10.0, 50.0),
        (7.0, 2.0, 8.0),
        (1260.0, 500.0, 1500.0),
    ] {
        let axis = Axis::new(highest);
        assert_eq!((axis.step, axis.top), (step, top), "{highest}");
    }
}

#[test]
fn a_recorded_run_is_a_pale_band_beneath_its_simulated_line() {
    let outcomes = [outcome(
        "worker-a",
        vec![(0.0, 0, 0), (2.0, 30, 3), (9.0, 0, 0)],
    )];
    let real = outcome("real", vec![(0.5, 4, 0), (3.0, 28, 3), (13.0, 0, 0)]).series;
    let mut lines = lines_of(&outcomes);
    lines.push(Line {
        label: "real (worker-a)",
        series: &real,
        colour: 0,
        recorded: true,
    });
    let svg = render_lines("sim-check", "seed 1", &lines);
    well_formed(&svg).expect("well-formed");
    let paths: Vec<&str> = svg.lines().filter(|l| l.starts_with("<path ")).collect();
    assert_eq!(paths.len(), 4, "two panels x two lines");
    for panel in paths.chunks(2) {
        assert!(
            panel[0].contains(r#"stroke-opacity="0.3""#),
            "recorded first"
        );
        assert!(panel[1].contains(r#"stroke-width="1.6""#));
        assert!(panel.iter().all(|p| p.contains(COLOURS[0])), "one colour");
    }
    assert!(svg.contains(">real (worker-a)<"));
    assert!(
        svg.contains(">15<"),
        "the time axis reaches the recorded run's end"
    );
}
