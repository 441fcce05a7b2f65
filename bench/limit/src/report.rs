//! What a command prints: one flat JSON object, and latency percentiles.

use std::fmt::Write;

/// A flat JSON object of strings and numbers, built field by field.
#[derive(Default)]
pub struct Json {
    body: String,
}

impl Json {
    /// An empty object.
    pub fn new() -> Json {
        Json::default()
    }

    fn key(mut self, name: &str) -> Json {
        if !self.body.is_empty() {
            self.body.push(',');
        }
        let _ = write!(self.body, "\"{name}\":");
        self
    }

    /// Adds a string field; the values this tool prints need no escaping
    /// beyond quotes and backslashes.
    pub fn str(self, name: &str, value: &str) -> Json {
        let mut j = self.key(name);
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = write!(j.body, "\"{escaped}\"");
        j
    }

    /// Adds an integer field.
    pub fn int(self, name: &str, value: u64) -> Json {
        let mut j = self.key(name);
        let _ = write!(j.body, "{value}");
        j
    }

    /// Adds a real field with six decimals (0 where it is not finite, as
    /// JSON has no NaN or infinity).
    pub fn num(self, name: &str, value: f64) -> Json {
        let mut j = self.key(name);
        let v = if value.is_finite() { value } else { 0.0 };
        let _ = write!(j.body, "{v:.6}");
        j
    }

    /// Adds `p50_us`, `p99_us` and `max_us`.
    pub fn latencies(self, l: &Latencies) -> Json {
        self.int("p50_us", l.p50_us)
            .int("p99_us", l.p99_us)
            .int("max_us", l.max_us)
    }

    /// The object as one line of text.
    pub fn line(&self) -> String {
        format!("{{{}}}", self.body)
    }
}

/// Percentiles of a set of latencies in microseconds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Latencies {
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest.
    pub max_us: u64,
}

impl Latencies {
    /// Nearest-rank percentiles of `us` (sorted here); zeros when empty.
    pub fn of(mut us: Vec<u32>) -> Latencies {
        if us.is_empty() {
            return Latencies::default();
        }
        us.sort_unstable();
        let rank = |p: f64| {
            let i = (p * us.len() as f64).ceil() as usize;
            u64::from(us[i.clamp(1, us.len()) - 1])
        };
        Latencies {
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            max_us: rank(1.0),
        }
    }
}

/// Microseconds in a `u32`, saturated (70 minutes is far beyond any op).
pub fn micros(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// `n` per second over `secs`.
pub fn rate(n: u64, secs: f64) -> f64 {
    n as f64 / secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_one_flat_object() {
        let j = Json::new()
            .str("op", "g\"et")
            .int("ops", 3)
            .num("secs", 0.5);
        assert_eq!(j.line(), r#"{"op":"g\"et","ops":3,"secs":0.500000}"#);
        assert_eq!(Json::new().num("x", f64::NAN).line(), r#"{"x":0.000000}"#);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let l = Latencies::of((1..=100).rev().collect());
        assert_eq!((l.p50_us, l.p99_us, l.max_us), (50, 99, 100));
        let one = Latencies::of(vec![7]);
        assert_eq!((one.p50_us, one.p99_us, one.max_us), (7, 7, 7));
        assert_eq!(Latencies::of(vec![]), Latencies::default());
    }
}
