//! A duration written as Kubernetes writes them (`5s`, `1m30s`, `250ms`).

use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern the API server checks, so a malformed duration is rejected at
/// `kubectl apply` with the field's name.
pub const PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval(Duration);

impl Interval {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    pub fn duration(self) -> Duration {
        self.0
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let parsed: kube::core::Duration = text
            .parse()
            .map_err(|e| format!("{text:?} is not a duration like 5s or 1m30s: {e}"))?;
        if parsed.is_negative() {
            return Err(format!("{text:?} must not be negative"));
        }
        Ok(Self(Duration::from(parsed)))
    }
}

impl From<Duration> for Interval {
    fn from(duration: Duration) -> Self {
        Self(duration)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis.is_multiple_of(3_600_000) && millis > 0 {
            write!(f, "{}h", millis / 3_600_000)
        } else if millis.is_multiple_of(60_000) && millis > 0 {
            write!(f, "{}m", millis / 60_000)
        } else if millis.is_multiple_of(1000) {
            write!(f, "{}s", millis / 1000)
        } else {
            write!(f, "{millis}ms")
        }
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Interval::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Interval {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Interval".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": PATTERN,
            "maxLength": 32,
            "description": "A duration such as 5s, 1m30s or 250ms."
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_kubernetes_durations() {
        for (text, millis, printed) in [
            ("5s", 5000, "5s"),
            ("1m30s", 90_000, "90s"),
            ("250ms", 250, "250ms"),
            ("2m", 120_000, "2m"),
            ("1h", 3_600_000, "1h"),
            ("0s", 0, "0s"),
        ] {
            let interval = Interval::parse(text).expect(text);
            assert_eq!(interval.duration(), Duration::from_millis(millis), "{text}");
            assert_eq!(interval.to_string(), printed);
        }
        assert!(Interval::parse("soon").is_err());
        assert!(Interval::parse("-5s").is_err());
    }
}
