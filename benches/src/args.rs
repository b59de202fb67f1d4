//! A small command-line parser for the benchmark binaries: `--name value`, `--name=value` and bare `--flag`.

use std::fmt::Display;
use std::str::FromStr;

/// The command line, consumed option by option; [`Args::finish`] rejects whatever is left.
#[derive(Debug)]
pub(crate) struct Args {
    items: Vec<(String, Option<String>)>,
}

impl Args {
    /// Parses the process's arguments.
    pub(crate) fn from_env() -> Result<Self, String> {
        Self::parse(std::env::args().skip(1))
    }

    /// Parses `args` (without the program name).
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut items = Vec::new();
        let mut args = args.into_iter().peekable();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument `{arg}`"));
            };
            if let Some((name, value)) = name.split_once('=') {
                items.push((name.to_owned(), Some(value.to_owned())));
            } else {
                let value = args.next_if(|next| !next.starts_with("--"));
                items.push((name.to_owned(), value));
            }
        }
        Ok(Self { items })
    }

    fn take(&mut self, name: &str) -> Option<Option<String>> {
        let at = self.items.iter().position(|(n, _)| n == name)?;
        Some(self.items.remove(at).1)
    }

    /// The value of `--name`, or `default` when absent.
    pub(crate) fn get<T>(&mut self, name: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.take(name) {
            None => Ok(default),
            Some(None) => Err(format!("--{name} needs a value")),
            Some(Some(value)) => value.parse().map_err(|e| format!("--{name} {value}: {e}")),
        }
    }

    /// The value of `--name`, which must be given.
    pub(crate) fn required<T>(&mut self, name: &str) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.take(name) {
            None | Some(None) => Err(format!("--{name} is required")),
            Some(Some(value)) => value.parse().map_err(|e| format!("--{name} {value}: {e}")),
        }
    }

    /// A comma-separated list, or `default` when absent.
    pub(crate) fn list<T>(&mut self, name: &str, default: &[T]) -> Result<Vec<T>, String>
    where
        T: FromStr + Clone,
        T::Err: Display,
    {
        match self.take(name) {
            None => Ok(default.to_vec()),
            Some(None) => Err(format!("--{name} needs a value")),
            Some(Some(value)) => {
                value.split(',').map(|v| v.trim().parse().map_err(|e| format!("--{name} {v}: {e}"))).collect()
            }
        }
    }

    /// Whether the bare `--name` was given.
    pub(crate) fn flag(&mut self, name: &str) -> Result<bool, String> {
        match self.take(name) {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(value)) => Err(format!("--{name} takes no value, got `{value}`")),
        }
    }

    /// Fails if an option was given that nothing asked for.
    pub(crate) fn finish(self) -> Result<(), String> {
        match self.items.first() {
            None => Ok(()),
            Some((name, _)) => Err(format!("unknown option --{name}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_flags_and_lists() {
        let args = ["--conns", "10", "--quick", "--rates=10,100", "--name", "x"].map(String::from);
        let mut args = Args::parse(args).unwrap();
        assert_eq!(args.get("conns", 1usize).unwrap(), 10);
        assert!(args.flag("quick").unwrap());
        assert_eq!(args.list("rates", &[1u32]).unwrap(), [10, 100]);
        assert_eq!(args.get("missing", 7u8).unwrap(), 7);
        assert!(args.finish().is_err(), "--name was not consumed");
    }
}
