//! Recorded traces (`--trace csv:FILE`): one published task per line, with its
//! arrival time in seconds and, optionally, its service time and its queue.
//!
//! Without a header the first column is the arrival time and the second, when
//! present, the service time. A first line that is not a time is a header, and
//! then columns are found by name: the time in `t_s`, `t`, `time` or `at` (else
//! the first), the service time in `duration_s`, `service_s`, `service` or
//! `duration` (else the second, in a file of two columns), the queue in `queue`.
//! That reads what `warren-dispatcher load-test --trace-out` writes
//! (`t_s,queue,task,duration_s`). Blank lines and `#` comments are skipped;
//! fields are separated by `,`, `;` or tabs.

use super::spec::seconds;
use super::trace::Arrival;

const TIME: [&str; 4] = ["t_s", "t", "time", "at"];
const SERVICE: [&str; 4] = ["duration_s", "service_s", "service", "duration"];

/// Where each field is in a line.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Columns {
    time: usize,
    service: Option<usize>,
    queue: Option<usize>,
}

impl Columns {
    const UNNAMED: Self = Self {
        time: 0,
        service: Some(1),
        queue: None,
    };

    fn named(header: &[&str]) -> Self {
        let find = |names: &[&str]| {
            header
                .iter()
                .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
        };
        Self {
            time: find(&TIME).unwrap_or(0),
            service: find(&SERVICE).or((header.len() == 2).then_some(1)),
            queue: find(&["queue"]),
        }
    }
}

/// The arrivals of a CSV trace, in file order; errors carry the line number (from 1).
pub fn parse_csv(text: &str) -> Result<Vec<Arrival>, (usize, String)> {
    let mut arrivals = Vec::new();
    let mut columns: Option<Columns> = None;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split([',', ';', '\t']).map(str::trim).collect();
        let layout = match columns {
            Some(layout) => layout,
            None if seconds(fields[0]).is_err() => {
                columns = Some(Columns::named(&fields));
                continue;
            }
            None => *columns.insert(Columns::UNNAMED),
        };
        let field = |at: Option<usize>| at.and_then(|i| fields.get(i)).filter(|f| !f.is_empty());
        let time = field(Some(layout.time)).ok_or((index + 1, "no arrival time".to_owned()))?;
        let at = seconds(time).map_err(|e| (index + 1, e.to_string()))?;
        let service = match field(layout.service) {
            Some(text) => Some(seconds(text).map_err(|e| (index + 1, e.to_string()))?),
            None => None,
        };
        let queue = field(layout.queue).map(|q| (*q).to_owned());
        arrivals.push(Arrival { at, service, queue });
    }
    Ok(arrivals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(at: f64, service: Option<f64>, queue: Option<&str>) -> Arrival {
        Arrival {
            at,
            service,
            queue: queue.map(str::to_owned),
        }
    }

    #[test]
    fn plain_lines_give_a_time_and_an_optional_service_time() {
        let text = "0.5,0.2\n\n# a comment\n0.1\n2.0; 1.5\n3\t\n";
        assert_eq!(
            parse_csv(text),
            Ok(vec![
                arrival(0.5, Some(0.2), None),
                arrival(0.1, None, None),
                arrival(2.0, Some(1.5), None),
                arrival(3.0, None, None),
            ])
        );
        assert_eq!(
            parse_csv("1\n2\nthree\n"),
            Err((
                3,
                "\"three\": not a duration like 0.5, 500ms, 2s, 10m or 1h".into()
            ))
        );
    }

    #[test]
    fn a_header_names_the_columns() {
        let two = "time,service\n0.5,0.2\n1.0\n";
        assert_eq!(
            parse_csv(two),
            Ok(vec![
                arrival(0.5, Some(0.2), None),
                arrival(1.0, None, None)
            ])
        );
        let only_times = "arrived\n4\n";
        assert_eq!(parse_csv(only_times), Ok(vec![arrival(4.0, None, None)]));
    }

    #[test]
    fn reads_the_load_tests_trace_out() {
        let text = "t_s,queue,task,duration_s\n\
                    0.002590,queue_a,task_a,0.179\n\
                    0.043101,queue_b,task_b,0.149\n";
        assert_eq!(
            parse_csv(text),
            Ok(vec![
                arrival(0.00259, Some(0.179), Some("queue_a")),
                arrival(0.043101, Some(0.149), Some("queue_b")),
            ])
        );
    }
}
