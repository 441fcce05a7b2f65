//! Command-line flags: `--name value` pairs, taken one by one by each command.

use std::collections::HashMap;
use std::str::FromStr;

use crate::Result;

/// The flags after the command name. Each command takes what it knows;
/// [`Args::finish`] then refuses anything left, so a typo is an error
/// rather than a silently ignored default.
pub struct Args {
    flags: HashMap<String, String>,
}

impl Args {
    /// Parses `--name value` pairs; a flag given twice is an error.
    pub fn parse(words: impl IntoIterator<Item = String>) -> Result<Args> {
        let mut flags = HashMap::new();
        let mut words = words.into_iter();
        while let Some(word) = words.next() {
            let Some(name) = word.strip_prefix("--") else {
                return Err(format!("unexpected argument: {word}").into());
            };
            let Some(value) = words.next() else {
                return Err(format!("--{name} needs a value").into());
            };
            if flags.insert(name.to_string(), value).is_some() {
                return Err(format!("--{name} given twice").into());
            }
        }
        Ok(Args { flags })
    }

    /// The value of `--name`, parsed, or an error naming the flag.
    pub fn required<T: FromStr>(&mut self, name: &str) -> Result<T> {
        match self.flags.remove(name) {
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: cannot parse {v:?}").into()),
            None => Err(format!("--{name} is required").into()),
        }
    }

    /// The value of `--name`, parsed, or `default` when absent.
    pub fn optional<T: FromStr>(&mut self, name: &str, default: T) -> Result<T> {
        if self.flags.contains_key(name) {
            self.required(name)
        } else {
            Ok(default)
        }
    }

    /// Like [`Args::optional`], for counts that must be at least 1.
    pub fn count(&mut self, name: &str, default: Option<u64>) -> Result<u64> {
        let n = match default {
            Some(d) => self.optional(name, d)?,
            None => self.required(name)?,
        };
        if n == 0 {
            return Err(format!("--{name} must be at least 1").into());
        }
        Ok(n)
    }

    /// Fails if a flag was given that no one took.
    pub fn finish(self) -> Result<()> {
        let mut left: Vec<_> = self.flags.into_keys().collect();
        if left.is_empty() {
            return Ok(());
        }
        left.sort();
        Err(format!("unknown flag(s): --{}", left.join(", --")).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args> {
        Args::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn takes_flags_and_refuses_leftovers() {
        let mut a = args("--ops 10 --key /k").unwrap();
        assert_eq!(a.required::<u64>("ops").unwrap(), 10);
        assert_eq!(a.optional("value-size", 256u64).unwrap(), 256);
        assert!(a.finish().is_err());
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(args("--ops").is_err());
        assert!(args("ops 1").is_err());
        assert!(args("--ops 1 --ops 2").is_err());
        assert!(args("--ops x").unwrap().required::<u64>("ops").is_err());
        assert!(args("--ops 0").unwrap().count("ops", None).is_err());
    }
}
