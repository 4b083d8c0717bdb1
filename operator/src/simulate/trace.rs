//! Arrival traces: when each task is published, and optionally how long it runs.
//!
//! A trace is a recorded file (`csv:FILE`, read by [`super::recorded`]: an
//! arrival time in seconds per line, optionally its service time and queue) or
//! a generator:
//!
//! - `burst:N[@T]`: N tasks at once at T (default 0);
//! - `ramp:FROM-TO[/s]:DURATION`: a rate rising linearly from FROM to TO tasks/s;
//! - `steady:R[/s]:DURATION`: a constant rate;
//! - `spikes:N:EVERY:DURATION`: N tasks at once at 0, EVERY, 2 x EVERY, ...;
//! - `wave:MEAN:AMPLITUDE:PERIOD:DURATION`: MEAN + AMPLITUDE x sin(2 pi t / PERIOD)
//!   tasks/s, never below 0.
//!
//! Parts joined with `+` are superimposed (`steady:5:10m+burst:1000@5m`).
//! Generators with a rate draw Poisson arrivals (exponential gaps, thinned for a
//! varying rate) from a generator seeded by the seed and the part's position, so
//! a seed replays the same trace.

use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::{RngExt, SeedableRng};
use thiserror::Error;

use super::SimRng;
use super::recorded::parse_csv;
use super::spec::{SpecError, count, number, seconds};

/// One published task.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Seconds from the start of the simulation.
    pub at: f64,
    /// The task's own service time, when the trace records it.
    pub service: Option<f64>,
    /// The queue it went to, when the trace records it.
    pub queue: Option<String>,
}

/// A trace ready to replay: its spec as given and its arrivals in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub name: String,
    pub arrivals: Vec<Arrival>,
}

#[derive(Debug, Error)]
pub enum TraceError {
    #[error("--trace {0}")]
    Spec(#[from] SpecError),
    #[error("cannot read the trace {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}, line {line}: {reason}")]
    Csv {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// A parsed `--trace`.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSpec {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Csv(PathBuf),
    Generated(Generator),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Generator {
    Burst {
        count: usize,
        at: f64,
    },
    Ramp {
        from: f64,
        to: f64,
        duration: f64,
    },
    Steady {
        rate: f64,
        duration: f64,
    },
    Spikes {
        count: usize,
        every: f64,
        duration: f64,
    },
    Wave {
        mean: f64,
        amplitude: f64,
        period: f64,
        duration: f64,
    },
}

impl TraceSpec {
    /// The trace's arrivals; `read` reads a `csv:` file (the caller's I/O).
    pub fn load(
        &self,
        seed: u64,
        read: impl Fn(&Path) -> io::Result<String>,
    ) -> Result<Trace, TraceError> {
        let mut arrivals = Vec::new();
        for (index, part) in (0u64..).zip(&self.parts) {
            match part {
                Part::Csv(path) => {
                    let text = read(path).map_err(|source| TraceError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    arrivals.extend(parse_csv(&text).map_err(|(line, reason)| {
                        TraceError::Csv {
                            path: path.clone(),
                            line,
                            reason,
                        }
                    })?);
                }
                Part::Generated(generator) => {
                    let mut rng = SimRng::seed_from_u64(stream_seed(seed, index));
                    arrivals.extend(generator.arrivals(&mut rng).into_iter().map(|at| Arrival {
                        at,
                        service: None,
                        queue: None,
                    }));
                }
            }
        }
        arrivals.sort_by(|a, b| a.at.total_cmp(&b.at));
        Ok(Trace {
            name: self.text.clone(),
            arrivals,
        })
    }
}

/// Independent streams for the parts of one seed.
pub(super) fn stream_seed(seed: u64, index: u64) -> u64 {
    seed ^ 0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(index.wrapping_add(1))
}

impl FromStr for TraceSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let parts = text
            .split('+')
            .map(|part| match part.strip_prefix("csv:") {
                Some(path) if !path.is_empty() => Ok(Part::Csv(PathBuf::from(path))),
                Some(_) => Err(SpecError::new(part, "csv: needs a file")),
                None => part.parse().map(Part::Generated),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }
}

impl FromStr for Generator {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let fields: Vec<&str> = text.split(':').collect();
        let wrong = |form: &str| SpecError::new(text, format!("expected {form}"));
        let generator = match fields.as_slice() {
            ["burst", rest] => {
                let (n, at) = rest.split_once('@').unwrap_or((rest, "0"));
                Self::Burst {
                    count: count(n)?,
                    at: seconds(at)?,
                }
            }
            ["ramp", rates, duration] => {
                let rates = rates.strip_suffix("/s").unwrap_or(rates);
                let (from, to) = rates
                    .split_once('-')
                    .ok_or_else(|| wrong("ramp:FROM-TO:DURATION"))?;
                Self::Ramp {
                    from: number(from)?,
                    to: number(to)?,
                    duration: seconds(duration)?,
                }
            }
            ["steady", rate, duration] => Self::Steady {
                rate: number(rate.strip_suffix("/s").unwrap_or(rate))?,
                duration: seconds(duration)?,
            },
            ["spikes", n, every, duration] => {
                let every = seconds(every)?;
                if every <= 0.0 {
                    return Err(SpecError::new(text, "EVERY must be above 0"));
                }
                Self::Spikes {
                    count: count(n)?,
                    every,
                    duration: seconds(duration)?,
                }
            }
            ["wave", mean, amplitude, period, duration] => {
                let period = seconds(period)?;
                if period <= 0.0 {
                    return Err(SpecError::new(text, "PERIOD must be above 0"));
                }
                Self::Wave {
                    mean: number(mean)?,
                    amplitude: number(amplitude)?,
                    period,
                    duration: seconds(duration)?,
                }
            }
            ["burst" | "ramp" | "steady" | "spikes" | "wave", ..] => {
                return Err(wrong(
                    "burst:N[@T], ramp:FROM-TO:DURATION, steady:R:DURATION, \
                     spikes:N:EVERY:DURATION or wave:MEAN:AMPLITUDE:PERIOD:DURATION",
                ));
            }
            _ => {
                return Err(SpecError::new(
                    text,
                    "unknown trace: use csv:FILE, burst, ramp, steady, spikes or wave",
                ));
            }
        };
        Ok(generator)
    }
}

impl Generator {
    /// Arrival times in seconds, in order.
    pub fn arrivals(&self, rng: &mut SimRng) -> Vec<f64> {
        match *self {
            Self::Burst { count, at } => vec![at; count],
            Self::Spikes {
                count,
                every,
                duration,
            } => (0u32..)
                .map(|k| f64::from(k) * every)
                .take_while(|at| *at < duration)
                .flat_map(|at| std::iter::repeat_n(at, count))
                .collect(),
            Self::Steady { rate, duration } => poisson(rng, duration, rate, |_| rate),
            Self::Ramp { from, to, duration } => poisson(rng, duration, from.max(to), |t| {
                from + (to - from) * t / duration
            }),
            Self::Wave {
                mean,
                amplitude,
                period,
                duration,
            } => poisson(rng, duration, mean + amplitude, |t| {
                (mean + amplitude * (std::f64::consts::TAU * t / period).sin()).max(0.0)
            }),
        }
    }
}

/// A Poisson process of rate `rate(t) <= peak` on [0, duration), by thinning: draw
/// at the peak rate, keep each arrival with probability rate(t) / peak.
fn poisson(rng: &mut SimRng, duration: f64, peak: f64, rate: impl Fn(f64) -> f64) -> Vec<f64> {
    let mut arrivals = Vec::new();
    if peak <= 0.0 {
        return arrivals;
    }
    let mut t = 0.0;
    loop {
        t += -(1.0 - rng.random::<f64>()).ln() / peak;
        if t >= duration {
            return arrivals;
        }
        if rng.random::<f64>() * peak < rate(t) {
            arrivals.push(t);
        }
    }
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
