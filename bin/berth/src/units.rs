//! Sizes, durations and timestamps written the way the docker CLI writes them
//! (SI sizes with Go's `%g`, "2 weeks ago", RFC 3339 in the local zone).

use chrono::{DateTime, Local, TimeZone};

const SI_UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];

/// `size` in SI units with `precision` significant digits: `1.98MB` for 3.
pub fn human_size_with_precision(size: f64, precision: usize) -> String {
    let mut size = size;
    let mut unit = 0;
    while size >= 1000.0 && unit < SI_UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", format_g(size, precision), SI_UNITS[unit])
}

/// `size` with four significant digits, as `docker system df` and `VirtualSize` print it.
pub fn human_size(size: f64) -> String {
    human_size_with_precision(size, 4)
}

/// Go's `%.{precision}g`: the shorter of fixed and exponent notation, no trailing zeros.
pub fn format_g(value: f64, precision: usize) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let precision = precision.max(1);
    // Round to `precision` significant digits first: the exponent is that of the rounded value.
    let scientific = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if exponent < -4 || exponent >= precision as i32 {
        let mantissa = trim_fraction_zeros(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    } else {
        let decimals = (precision as i32 - 1 - exponent).max(0) as usize;
        trim_fraction_zeros(&format!("{value:.decimals$}")).to_owned()
    }
}

fn trim_fraction_zeros(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

/// How long ago, in docker's words: "Less than a second", "About a minute", "3 weeks".
pub fn human_duration(seconds: i64) -> String {
    let hours_rounded = (seconds as f64 / 3600.0 + 0.5) as i64;
    if seconds < 1 {
        "Less than a second".to_owned()
    } else if seconds == 1 {
        "1 second".to_owned()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if seconds / 60 == 1 {
        "About a minute".to_owned()
    } else if seconds / 60 < 60 {
        format!("{} minutes", seconds / 60)
    } else if hours_rounded == 1 {
        "About an hour".to_owned()
    } else if hours_rounded < 48 {
        format!("{hours_rounded} hours")
    } else if hours_rounded < 24 * 7 * 2 {
        format!("{} days", hours_rounded / 24)
    } else if hours_rounded < 24 * 30 * 2 {
        format!("{} weeks", hours_rounded / 24 / 7)
    } else if hours_rounded < 24 * 365 * 2 {
        format!("{} months", hours_rounded / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

/// "3 weeks ago" for a Unix time in seconds.
pub fn since(unix_seconds: i64) -> String {
    format!(
        "{} ago",
        human_duration(Local::now().timestamp() - unix_seconds)
    )
}

fn local(unix_seconds: i64, nanos: u32) -> DateTime<Local> {
    Local
        .timestamp_opt(unix_seconds, nanos)
        .single()
        .unwrap_or_else(Local::now)
}

/// The zone as Go names it when the zone file gives no abbreviation we can read.
fn zone_suffix(time: &DateTime<Local>) -> String {
    if time.offset().local_minus_utc() == 0 {
        "UTC".to_owned()
    } else {
        time.format("%:z").to_string()
    }
}

/// Go's `time.Time.String()` for whole seconds: `2024-05-01 10:00:00 +0000 UTC`.
pub fn go_time_string(unix_seconds: i64) -> String {
    let time = local(unix_seconds, 0);
    format!(
        "{} {}",
        time.format("%Y-%m-%d %H:%M:%S %z"),
        zone_suffix(&time)
    )
}

/// RFC 3339 in the local zone with `Z` for UTC: `2024-05-01T10:00:00Z`.
pub fn rfc3339(unix_seconds: i64) -> String {
    let time = local(unix_seconds, 0);
    if time.offset().local_minus_utc() == 0 {
        time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        time.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The event timestamp docker prints: nine fraction digits, local zone.
pub fn rfc3339_nano_fixed(unix_nanos: i64) -> String {
    let time = local(
        unix_nanos.div_euclid(1_000_000_000),
        unix_nanos.rem_euclid(1_000_000_000) as u32,
    );
    if time.offset().local_minus_utc() == 0 {
        time.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
    } else {
        time.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string()
    }
}

/// A `--since`/`--until` value as the API wants it: Unix seconds (with an
/// optional fraction), an RFC 3339 date, or a Go duration ("10m", "1h30m")
/// counted back from now. `None` when it is none of those.
pub fn api_timestamp(value: &str, now_unix: i64) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value
        .split_once('.')
        .map_or(value.chars().all(|c| c.is_ascii_digit()), |(s, f)| {
            !s.is_empty()
                && s.chars().all(|c| c.is_ascii_digit())
                && f.chars().all(|c| c.is_ascii_digit())
        })
    {
        return Some(value.to_owned());
    }
    if let Some(seconds) = go_duration_seconds(value) {
        return Some(format!("{}", now_unix - seconds));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        return Some(format!(
            "{}.{:09}",
            time.timestamp(),
            time.timestamp_subsec_nanos()
        ));
    }
    for layout in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(value, layout) {
            return Some(naive.and_utc().timestamp().to_string());
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return date
            .and_hms_opt(0, 0, 0)
            .map(|naive| naive.and_utc().timestamp().to_string());
    }
    None
}

/// Whole seconds of a Go duration such as `1h30m`, `90s` or `1.5h`.
fn go_duration_seconds(value: &str) -> Option<i64> {
    go_duration_nanos(value).map(|nanos| nanos / 1_000_000_000)
}

/// Nanoseconds of a Go duration (`time.ParseDuration`): `1h30m`, `1.5s`,
/// `300ms`, `-2m`, `0`.
pub fn go_duration_nanos(value: &str) -> Option<i64> {
    let (negative, mut rest) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (whole, fraction) = rest[..number_end]
            .split_once('.')
            .unwrap_or((&rest[..number_end], ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return None;
        }
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit: i128 = match &rest[..unit_end] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_end..];
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let digits = fraction.len().min(18) as u32;
        let fraction: i128 = if digits == 0 {
            0
        } else {
            fraction[..digits as usize].parse().ok()?
        };
        total += whole * unit + fraction * unit / 10i128.pow(digits);
        if total > i64::MAX as i128 {
            return None;
        }
    }
    let total = total as i64;
    Some(if negative { -total } else { total })
}

/// A size such as `512m`, `1.5g`, `64MiB` or `1024` in bytes, with binary
/// multipliers (go-units' `RAMInBytes`, as `--memory` and `--shm-size` take it).
pub fn ram_in_bytes(value: &str) -> Result<i64, String> {
    let invalid = || format!("invalid size: '{value}'");
    let Some(separator) = value.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ') else {
        return Err(invalid());
    };
    let (number, suffix) = if value.as_bytes()[separator] == b' ' {
        (&value[..separator], &value[separator + 1..])
    } else {
        (&value[..=separator], &value[separator + 1..])
    };
    let size: f64 = number
        .parse()
        .map_err(|_| format!("strconv.ParseFloat: parsing {number:?}: invalid syntax"))?;
    if size < 0.0 {
        return Err(invalid());
    }
    if suffix.is_empty() {
        return Ok(size as i64);
    }
    let bad_suffix = || format!("invalid suffix: '{}'", suffix.to_lowercase());
    let lower = suffix.to_lowercase();
    if lower.len() > 3 {
        return Err(bad_suffix());
    }
    if lower == "b" {
        return Ok(size as i64);
    }
    let multiplier: f64 = match lower.as_bytes()[0] {
        b'k' => 1024.0,
        b'm' => 1024.0 * 1024.0,
        b'g' => 1024.0 * 1024.0 * 1024.0,
        b't' => 1024f64.powi(4),
        b'p' => 1024f64.powi(5),
        _ => return Err(bad_suffix()),
    };
    match lower.len() {
        2 if &lower[1..] != "b" => return Err(bad_suffix()),
        3 if &lower[1..] != "ib" => return Err(bad_suffix()),
        _ => {}
    }
    Ok((size * multiplier) as i64)
}

/// `size` in binary units with four significant digits (`3.834GiB`), as `docker info` prints memory.
pub fn binary_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = size;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    format!("{}{}", format_g(size, 4), UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_docker() {
        assert_eq!(human_size_with_precision(1_982_314.0, 3), "1.98MB");
        assert_eq!(human_size(1_982_314.0), "1.982MB");
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size_with_precision(7_410_000.0, 3), "7.41MB");
        assert_eq!(human_size_with_precision(1_000_000.0, 3), "1MB");
        assert_eq!(human_size_with_precision(999.0, 3), "999B");
        assert_eq!(human_size_with_precision(999_900.0, 3), "1e+03kB");
        assert_eq!(human_size_with_precision(12_345.0, 3), "12.3kB");
    }

    #[test]
    fn durations_match_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(3 * 60), "3 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(15 * 86400), "2 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
    }

    #[test]
    fn timestamps_for_the_api() {
        assert_eq!(
            api_timestamp("1700000000", 0).as_deref(),
            Some("1700000000")
        );
        assert_eq!(
            api_timestamp("1700000000.5", 0).as_deref(),
            Some("1700000000.5")
        );
        assert_eq!(api_timestamp("10m", 1000).as_deref(), Some("400"));
        assert_eq!(api_timestamp("1h30m", 6000).as_deref(), Some("600"));
        assert_eq!(
            api_timestamp("2024-01-01T00:00:00Z", 0).as_deref(),
            Some("1704067200.000000000")
        );
        assert_eq!(api_timestamp("yesterday", 0), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_nanos("30s"), Some(30_000_000_000));
        assert_eq!(go_duration_nanos("1.5s"), Some(1_500_000_000));
        assert_eq!(go_duration_nanos("1h30m"), Some(5_400_000_000_000));
        assert_eq!(go_duration_nanos("300ms"), Some(300_000_000));
        assert_eq!(go_duration_nanos("0"), Some(0));
        assert_eq!(go_duration_nanos("-2m"), Some(-120_000_000_000));
        assert_eq!(go_duration_nanos("10"), None);
        assert_eq!(go_duration_nanos("1x"), None);
        assert_eq!(go_duration_nanos(""), None);
    }

    #[test]
    fn ram_sizes_are_binary() {
        assert_eq!(ram_in_bytes("64m"), Ok(64 << 20));
        assert_eq!(ram_in_bytes("1g"), Ok(1 << 30));
        assert_eq!(ram_in_bytes("1.5k"), Ok(1536));
        assert_eq!(ram_in_bytes("10MiB"), Ok(10 << 20));
        assert_eq!(ram_in_bytes("512"), Ok(512));
        assert_eq!(ram_in_bytes("2 kb"), Ok(2048));
        assert_eq!(ram_in_bytes("1x"), Err("invalid suffix: 'x'".to_owned()));
        assert_eq!(ram_in_bytes("m"), Err("invalid size: 'm'".to_owned()));
    }
}
