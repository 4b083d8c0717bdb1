//! The small grammar the simulator's flags share: durations in seconds (`0.5`,
//! `500ms`, `2s`, `10m`, `1h`), counts and rates, and the error that names the
//! spec a user got wrong.

use thiserror::Error;

/// A spec that does not parse, with the text as given and why.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("{spec:?}: {reason}")]
pub struct SpecError {
    pub spec: String,
    pub reason: String,
}

impl SpecError {
    pub fn new(spec: &str, reason: impl Into<String>) -> Self {
        Self {
            spec: spec.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Seconds from `0.5`, `500ms`, `2s`, `10m` or `1h`; never negative, always finite.
pub fn seconds(text: &str) -> Result<f64, SpecError> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (text, 1.0)
    };
    let value = number
        .parse::<f64>()
        .map_err(|_| SpecError::new(text, "not a duration like 0.5, 500ms, 2s, 10m or 1h"))?;
    non_negative(text, value * scale)
}

/// A non-negative finite number (a rate, a mean, an amplitude).
pub fn number(text: &str) -> Result<f64, SpecError> {
    let value = text
        .trim()
        .parse::<f64>()
        .map_err(|_| SpecError::new(text, "not a number"))?;
    non_negative(text, value)
}

/// A whole count of tasks.
pub fn count(text: &str) -> Result<usize, SpecError> {
    text.trim()
        .parse::<usize>()
        .map_err(|_| SpecError::new(text, "not a whole number"))
}

fn non_negative(text: &str, value: f64) -> Result<f64, SpecError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(SpecError::new(text, "must be a finite number, 0 or more"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_plain_seconds() {
        for (text, want) in [
            ("0.5", 0.5),
            ("500ms", 0.5),
            ("2s", 2.0),
            ("10m", 600.0),
            ("1h", 3600.0),
            (" 3 ", 3.0),
        ] {
            assert_eq!(seconds(text), Ok(want), "{text}");
        }
        for bad in ["", "-1", "2x", "inf", "NaN", "s"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_and_numbers() {
        assert_eq!(count("2000"), Ok(2000));
        assert!(count("2.5").is_err());
        assert_eq!(number("12.5"), Ok(12.5));
        assert!(number("-3").is_err());
    }
}
