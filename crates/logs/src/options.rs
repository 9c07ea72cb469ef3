//! `--log-opt` parsing shared by the drivers: docker's size units, Go's
//! boolean and integer syntax, and the file drivers' rotation limits
//! (including Berth's capped json-file defaults).

use std::collections::BTreeMap;

use crate::{Error, Result};

pub(crate) fn invalid(opt: &str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidOption {
        opt: opt.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Refuses any option not in `known`, with dockerd's message.
pub(crate) fn check_known(
    driver: &str,
    opts: &BTreeMap<String, String>,
    known: &[&str],
) -> Result<()> {
    match opts.keys().find(|k| !known.contains(&k.as_str())) {
        Some(opt) => Err(Error::UnknownOption {
            driver: driver.to_string(),
            opt: opt.clone(),
        }),
        None => Ok(()),
    }
}

/// docker's `units.FromHumanSize`: a decimal number, an optional space, an
/// optional k/m/g/t/p (powers of 1000) and an optional `i` and `b`, any case.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, rest) = s.split_at(digits_end);
    // `\d+(\.\d+)*`: no leading, trailing or doubled dots.
    if number.is_empty() || number.split('.').any(str::is_empty) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut chars = rest.chars().peekable();
    let multiplier: f64 = match chars.peek().map(char::to_ascii_lowercase) {
        Some('k') => 1e3,
        Some('m') => 1e6,
        Some('g') => 1e9,
        Some('t') => 1e12,
        Some('p') => 1e15,
        _ => 1.0,
    };
    if multiplier != 1.0 {
        chars.next();
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'i')) {
        chars.next();
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'b')) {
        chars.next();
    }
    if chars.next().is_some() {
        return None;
    }
    let bytes = value * multiplier;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return None;
    }
    Some(bytes as u64)
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Where and how much a file driver keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileLimits {
    /// None: the file grows without bound.
    pub max_size: Option<u64>,
    /// Files in total, the current one included (≥ 1).
    pub max_file: u32,
    /// Rotated files are gzip-compressed.
    pub compress: bool,
}

/// Berth's json-file defaults when `max-size` is not given (dockerd's are
/// unlimited); see [`crate::DEFAULT_MAX_SIZE`].
pub(crate) fn json_file_limits(opts: &BTreeMap<String, String>) -> Result<FileLimits> {
    let max_size = match opts.get("max-size").map(String::as_str) {
        Some("-1") => None,
        Some(v) => match parse_size(v) {
            Some(0) => return Err(invalid("max-size", v, "max-size must be a positive number")),
            Some(n) => Some(n),
            None => {
                return Err(invalid(
                    "max-size",
                    v,
                    "expected a size such as 10k, 20m or 1g (or -1 for no limit)",
                ))
            }
        },
        None => parse_size(crate::DEFAULT_MAX_SIZE),
    };
    let max_file = match opts.get("max-file") {
        Some(v) => {
            let n = parse_count(v)?;
            if max_size.is_none() && n > 1 {
                return Err(invalid(
                    "max-file",
                    v,
                    "max-file is only valid with a max-size (max-size is -1)",
                ));
            }
            n
        }
        None if opts.contains_key("max-size") => 1,
        None => crate::DEFAULT_MAX_FILE.parse().unwrap_or(1),
    };
    let compress = match opts.get("compress") {
        Some(v) => parse_bool(v).ok_or_else(|| invalid("compress", v, "expected true or false"))?,
        None => false,
    };
    if compress && (max_file < 2 || max_size.is_none()) {
        let value = opts.get("compress").map(String::as_str).unwrap_or_default();
        return Err(invalid(
            "compress",
            value,
            "compress cannot be true when max-file is less than 2 or max-size is not set",
        ));
    }
    Ok(FileLimits {
        max_size,
        max_file,
        compress,
    })
}

/// dockerd's local driver defaults: 20 MiB, 5 files, compressed.
pub(crate) fn local_limits(opts: &BTreeMap<String, String>) -> Result<FileLimits> {
    let max_size = match opts.get("max-size") {
        Some(v) => match parse_size(v) {
            Some(0) | None => {
                return Err(invalid(
                    "max-size",
                    v,
                    "expected a positive size such as 10k, 20m or 1g",
                ))
            }
            Some(n) => n,
        },
        None => 20 * 1024 * 1024,
    };
    let max_file = match opts.get("max-file") {
        Some(v) => parse_count(v)?,
        None => 5,
    };
    let compress = match opts.get("compress") {
        Some(v) => parse_bool(v).ok_or_else(|| invalid("compress", v, "expected true or false"))?,
        None => true,
    };
    if compress && max_file < 2 {
        let (opt, value) = match opts.get("compress") {
            Some(v) => ("compress", v.as_str()),
            None => ("max-file", opts.get("max-file").map_or("", String::as_str)),
        };
        return Err(invalid(
            opt,
            value,
            "compression cannot be enabled when max file count is 1 (set compress=false)",
        ));
    }
    Ok(FileLimits {
        max_size: Some(max_size),
        max_file,
        compress,
    })
}

fn parse_count(v: &str) -> Result<u32> {
    match v.parse::<i64>() {
        Ok(n) if n >= 1 => u32::try_from(n).map_err(|_| invalid("max-file", v, "too many files")),
        Ok(_) => Err(invalid("max-file", v, "max-file cannot be less than 1")),
        Err(_) => Err(invalid("max-file", v, "expected a whole number of files")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_docker_decimal_units() {
        assert_eq!(parse_size("10k"), Some(10_000));
        assert_eq!(parse_size("20m"), Some(20_000_000));
        assert_eq!(parse_size("1g"), Some(1_000_000_000));
        assert_eq!(parse_size("1.5 GiB"), Some(1_500_000_000));
        assert_eq!(parse_size("300"), Some(300));
        assert_eq!(parse_size("20MB"), Some(20_000_000));
        for bad in ["", "m", "-1", "1..5m", "10x", "10 m b", ".5m", "5.m"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}
