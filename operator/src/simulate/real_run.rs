//! A recorded real run for `simulate --real FILE`: what the operator and the
//! broker did, sampled on the arrival trace's clock, as `make sim-check-record`
//! writes it (`real.csv`: `t_s,queue,spec_replicas,ready_pods,ready,unacked`).
//!
//! The header names the columns; `t_s` (or `t`), `queue`, `spec_replicas` (or
//! `replicas`), `ready` and `unacked` are needed, others are ignored. Each row
//! becomes a [`Point`] of its queue's series (replicas = the Deployment's
//! `spec.replicas`, as the simulator's replicas are), in time order. Blank lines
//! and `#` comments are skipped; fields are separated by `,`, `;` or tabs.

use std::collections::BTreeMap;

use thiserror::Error;

use super::report::Point;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum RealRunError {
    #[error("no header line")]
    NoHeader,
    #[error("the header has no {0} column")]
    MissingColumn(&'static str),
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// Where each needed field is in a line.
struct Columns {
    t: usize,
    queue: usize,
    replicas: usize,
    ready: usize,
    unacked: usize,
}

impl Columns {
    fn named(header: &[&str]) -> Result<Self, RealRunError> {
        let find = |names: &[&'static str]| {
            header
                .iter()
                .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
                .ok_or(RealRunError::MissingColumn(names[0]))
        };
        Ok(Self {
            t: find(&["t_s", "t"])?,
            queue: find(&["queue"])?,
            replicas: find(&["spec_replicas", "replicas"])?,
            ready: find(&["ready"])?,
            unacked: find(&["unacked"])?,
        })
    }
}

/// The recorded series of each queue, by queue name, each in time order.
pub fn parse_real_csv(text: &str) -> Result<BTreeMap<String, Vec<Point>>, RealRunError> {
    let mut columns: Option<Columns> = None;
    let mut series: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split([',', ';', '\t']).map(str::trim).collect();
        let Some(layout) = &columns else {
            columns = Some(Columns::named(&fields)?);
            continue;
        };
        let failed = |reason: String| RealRunError::Line {
            line: index + 1,
            reason,
        };
        let field = |at: usize, name: &str| {
            fields
                .get(at)
                .filter(|f| !f.is_empty())
                .copied()
                .ok_or_else(|| failed(format!("no {name}")))
        };
        let count = |at: usize, name: &str| {
            let text = field(at, name)?;
            text.parse::<usize>()
                .map_err(|_| failed(format!("{name} {text:?} is not a count")))
        };
        let t_text = field(layout.t, "t_s")?;
        let t = t_text
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite())
            .ok_or_else(|| failed(format!("t_s {t_text:?} is not a time in seconds")))?;
        let point = Point {
            t,
            ready: count(layout.ready, "ready")?,
            unacked: count(layout.unacked, "unacked")?,
            replicas: count(layout.replicas, "spec_replicas")?,
        };
        let queue = field(layout.queue, "queue")?.to_owned();
        series.entry(queue).or_default().push(point);
    }
    if columns.is_none() {
        return Err(RealRunError::NoHeader);
    }
    for points in series.values_mut() {
        points.sort_by(|a, b| a.t.total_cmp(&b.t));
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: f64, replicas: usize, ready: usize, unacked: usize) -> Point {
        Point {
            t,
            ready,
            unacked,
            replicas,
        }
    }

    #[test]
    fn reads_what_sim_check_record_writes() {
        let text = "t_s,queue,spec_replicas,ready_pods,ready,unacked\n\
                    0.262,queue_a,0,0,4,0\n0.262,queue_b,0,0,3,0\n\
                    # a comment\n\n\
                    0.762,queue_a,1,0,10,0\n0.5,queue_b,1,0,9,1\n";
        let series = parse_real_csv(text).expect("valid");
        assert_eq!(series.len(), 2);
        assert_eq!(
            series["queue_a"],
            [point(0.262, 0, 4, 0), point(0.762, 1, 10, 0)]
        );
        assert_eq!(
            series["queue_b"],
            [point(0.262, 0, 3, 0), point(0.5, 1, 9, 1)],
            "in time order"
        );
    }

    #[test]
    fn columns_are_found_by_name() {
        let text = "queue;unacked;ready;replicas;t\nq;1;2;3;4.5\n";
        assert_eq!(
            parse_real_csv(text).expect("valid")["q"],
            [point(4.5, 3, 2, 1)]
        );
    }

    #[test]
    fn errors_name_the_column_or_the_line() {
        assert_eq!(parse_real_csv(""), Err(RealRunError::NoHeader));
        assert_eq!(
            parse_real_csv("t_s,queue,ready,unacked\n"),
            Err(RealRunError::MissingColumn("spec_replicas"))
        );
        let header = "t_s,queue,spec_replicas,ready,unacked\n";
        let error = parse_real_csv(&format!("{header}1,q,1,2,3\n2,q,-1,2,3\n"))
            .expect_err("a negative count");
        assert_eq!(
            error.to_string(),
            "line 3: spec_replicas \"-1\" is not a count"
        );
        let error = parse_real_csv(&format!("{header}x,q,1,2,3\n")).expect_err("no time");
        assert_eq!(
            error.to_string(),
            "line 2: t_s \"x\" is not a time in seconds"
        );
        let error = parse_real_csv(&format!("{header}1,q,1\n")).expect_err("short");
        assert_eq!(error.to_string(), "line 2: no ready");
    }
}
