//! Random durations for service times and pod start-up: `const:0.5`,
//! `uniform:0.2-0.8`, `exp:0.5` (mean), `lognormal:MEAN:SD` (the mean and
//! standard deviation of the duration itself, not of its logarithm) and
//! `values:A,B,C` (measured durations, one drawn at random each time, all equally
//! likely: the empirical distribution of a sample). Values are seconds and take
//! the units of [`super::spec::seconds`] (`500ms`, `2s`).
//!
//! Sampling draws from the simulator's seeded generator, so a seed replays the
//! same durations.

use std::fmt;
use std::str::FromStr;

use rand::RngExt;

use super::SimRng;
use super::spec::{SpecError, seconds};

#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    Const(f64),
    Uniform {
        low: f64,
        high: f64,
    },
    Exp {
        mean: f64,
    },
    LogNormal {
        mean: f64,
        sd: f64,
    },
    /// One of these, each as likely (never empty).
    Values(Vec<f64>),
}

impl Distribution {
    /// One duration in seconds, never negative.
    pub fn sample(&self, rng: &mut SimRng) -> f64 {
        match *self {
            Self::Values(ref values) => values[rng.random_range(0..values.len())],
            Self::Const(value) => value,
            Self::Uniform { low, high } => low + (high - low) * rng.random::<f64>(),
            // Inverse transform; 1 - u lies in (0, 1], so the logarithm is finite.
            Self::Exp { mean } => -mean * (1.0 - rng.random::<f64>()).ln(),
            Self::LogNormal { mean, sd } => {
                let (mu, sigma) = log_parameters(mean, sd);
                (mu + sigma * standard_normal(rng)).exp()
            }
        }
    }

    /// The spec, shortened for a line of text: a list of more than four values
    /// as their count, range and mean.
    pub fn brief(&self) -> String {
        match self {
            Self::Values(values) if values.len() > 4 => {
                let low = values.iter().copied().fold(f64::INFINITY, f64::min);
                let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!(
                    "{} values {low}-{high}s (mean {:.2}s)",
                    values.len(),
                    self.mean()
                )
            }
            _ => self.to_string(),
        }
    }

    /// The distribution's mean in seconds.
    pub fn mean(&self) -> f64 {
        match *self {
            Self::Const(value) => value,
            Self::Uniform { low, high } => (low + high) / 2.0,
            Self::Exp { mean } | Self::LogNormal { mean, .. } => mean,
            Self::Values(ref values) => values.iter().sum::<f64>() / values.len() as f64,
        }
    }
}

/// mu and sigma of the normal whose exponential has this mean and deviation.
fn log_parameters(mean: f64, sd: f64) -> (f64, f64) {
    let variance = (1.0 + (sd * sd) / (mean * mean)).ln();
    (mean.ln() - variance / 2.0, variance.sqrt())
}

/// Box-Muller; `1 - u` keeps the logarithm's argument in (0, 1].
fn standard_normal(rng: &mut SimRng) -> f64 {
    let radius = (-2.0 * (1.0 - rng.random::<f64>()).ln()).sqrt();
    radius * (std::f64::consts::TAU * rng.random::<f64>()).cos()
}

impl FromStr for Distribution {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let (kind, rest) = text.split_once(':').ok_or_else(|| {
            SpecError::new(
                text,
                "expected const:S, uniform:A-B, exp:MEAN, lognormal:MEAN:SD or values:A,B,...",
            )
        })?;
        let parsed = match kind {
            "const" => Self::Const(seconds(rest)?),
            "uniform" => {
                let (low, high) = rest
                    .split_once('-')
                    .ok_or_else(|| SpecError::new(text, "uniform takes LOW-HIGH"))?;
                let (low, high) = (seconds(low)?, seconds(high)?);
                if low > high {
                    return Err(SpecError::new(text, "LOW must not exceed HIGH"));
                }
                Self::Uniform { low, high }
            }
            "exp" => Self::Exp {
                mean: seconds(rest)?,
            },
            "lognormal" => {
                let (mean, sd) = rest
                    .split_once(':')
                    .ok_or_else(|| SpecError::new(text, "lognormal takes MEAN:SD"))?;
                let (mean, sd) = (seconds(mean)?, seconds(sd)?);
                if mean <= 0.0 {
                    return Err(SpecError::new(text, "a lognormal mean must be above 0"));
                }
                Self::LogNormal { mean, sd }
            }
            "values" => Self::Values(
                rest.split(',')
                    .map(seconds)
                    .collect::<Result<Vec<f64>, SpecError>>()?,
            ),
            other => {
                return Err(SpecError::new(
                    text,
                    format!(
                        "unknown distribution {other:?}: use const, uniform, exp, lognormal or values"
                    ),
                ));
            }
        };
        Ok(parsed)
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Const(value) => write!(f, "const:{value}s"),
            Self::Uniform { low, high } => write!(f, "uniform:{low}-{high}s"),
            Self::Exp { mean } => write!(f, "exp:{mean}s"),
            Self::LogNormal { mean, sd } => write!(f, "lognormal:{mean}s:{sd}s"),
            Self::Values(values) => {
                let listed: Vec<String> = values.iter().map(f64::to_string).collect();
                write!(f, "values:{}s", listed.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn mean_and_sd(distribution: &Distribution, n: usize) -> (f64, f64) {
        let mut rng = SimRng::seed_from_u64(7);
        let samples: Vec<f64> = (0..n).map(|_| distribution.sample(&mut rng)).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let variance = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(samples.iter().all(|s| *s >= 0.0 && s.is_finite()));
        (mean, variance.sqrt())
    }

    #[test]
    fn parses_every_kind_with_units() {
        assert_eq!("const:0.5".parse(), Ok(Distribution::Const(0.5)));
        assert_eq!("const:2s".parse(), Ok(Distribution::Const(2.0)));
        assert_eq!(
            "uniform:200ms-800ms".parse(),
            Ok(Distribution::Uniform {
                low: 0.2,
                high: 0.8
            })
        );
        assert_eq!("exp:0.5".parse(), Ok(Distribution::Exp { mean: 0.5 }));
        assert_eq!(
            "lognormal:1:0.5".parse(),
            Ok(Distribution::LogNormal { mean: 1.0, sd: 0.5 })
        );
        assert_eq!(
            "values:0.61,1.4s,3040ms".parse(),
            Ok(Distribution::Values(vec![0.61, 1.4, 3.04]))
        );
        for bad in [
            "0.5",
            "gamma:1",
            "uniform:0.8-0.2",
            "uniform:0.5",
            "lognormal:1",
            "lognormal:0:1",
            "exp:-1",
            "values:",
            "values:1,,2",
            "values:1,-2",
        ] {
            assert!(bad.parse::<Distribution>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sample_means_match_within_two_percent() {
        for spec in [
            "const:0.5",
            "uniform:0.2-0.8",
            "exp:0.5",
            "lognormal:1:0.5",
            "lognormal:2:3",
            "values:0.61,1.4,3.04,1.7",
        ] {
            let distribution: Distribution = spec.parse().expect("valid");
            let (mean, _) = mean_and_sd(&distribution, 200_000);
            let want = distribution.mean();
            assert!(
                (mean - want).abs() <= 0.02 * want,
                "{spec}: sample mean {mean} vs {want}"
            );
        }
    }

    #[test]
    fn spreads_match_the_parameters() {
        let (_, sd) = mean_and_sd(&Distribution::Exp { mean: 0.5 }, 200_000);
        assert!((sd - 0.5).abs() < 0.02, "exp sd {sd}");
        let (_, sd) = mean_and_sd(&Distribution::LogNormal { mean: 1.0, sd: 0.5 }, 200_000);
        assert!((sd - 0.5).abs() < 0.02, "lognormal sd {sd}");
        let (_, sd) = mean_and_sd(&Distribution::Const(3.0), 1000);
        assert_eq!(sd, 0.0);
    }

    #[test]
    fn a_seed_replays_the_same_samples() {
        let distribution = Distribution::Exp { mean: 1.0 };
        let draw = |seed| {
            let mut rng = SimRng::seed_from_u64(seed);
            (0..5)
                .map(|_| distribution.sample(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn values_draw_only_and_all_of_the_listed() {
        let distribution: Distribution = "values:1,2,5".parse().expect("valid");
        let mut rng = SimRng::seed_from_u64(3);
        let mut seen = [0; 3];
        for _ in 0..3000 {
            let value = distribution.sample(&mut rng);
            let index = [1.0, 2.0, 5.0].iter().position(|v| *v == value);
            seen[index.expect("a listed value")] += 1;
        }
        assert!(seen.iter().all(|n| (900..1100).contains(n)), "{seen:?}");
        assert_eq!(distribution.mean(), 8.0 / 3.0);
        assert_eq!(distribution.to_string(), "values:1,2,5s");
        assert_eq!(distribution.brief(), "values:1,2,5s");
        let many: Distribution = "values:0.6,3,1,2,1.5".parse().expect("valid");
        assert_eq!(many.brief(), "5 values 0.6-3s (mean 1.62s)");
        assert_eq!(
            distribution.to_string().parse::<Distribution>(),
            Ok(distribution)
        );
    }
}
