//! Timestamps as Go writes them: RFC 3339 with nanoseconds, trailing zeros of
//! the fraction trimmed (`time.RFC3339Nano`), and the local-time forms the
//! syslog formats use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, FixedOffset, Local, Offset, TimeZone, Timelike, Utc};

/// Seconds and nanoseconds since the Unix epoch; seconds may be negative.
pub(crate) fn split(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n),
            }
        }
    }
}

pub(crate) fn join(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            + Duration::from_nanos(u64::from(nanos))
    }
}

/// Nanoseconds since the epoch (the local driver's record field); saturates
/// outside ±292 years.
pub(crate) fn to_unix_nanos(t: SystemTime) -> i64 {
    let (secs, nanos) = split(t);
    secs.saturating_mul(1_000_000_000)
        .saturating_add(i64::from(nanos))
}

pub(crate) fn from_unix_nanos(n: i64) -> SystemTime {
    let secs = n.div_euclid(1_000_000_000);
    let nanos = u32::try_from(n.rem_euclid(1_000_000_000)).unwrap_or(0);
    join(secs, nanos)
}

/// Appends `.fraction` with trailing zeros trimmed (nothing when zero), as
/// Go's `.999999999` layouts do, keeping at most `digits` digits.
fn push_fraction(out: &mut Vec<u8>, nanos: u32, digits: u32) {
    let mut value = nanos / 10u32.pow(9 - digits);
    if value == 0 {
        return;
    }
    let mut width = digits as usize;
    // Trim trailing zeros (value is not zero, so this ends).
    while value / 10 * 10 == value {
        value /= 10;
        width -= 1;
    }
    out.push(b'.');
    let mut buf = [b'0'; 9];
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

fn push_2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

fn push_date_time<T: Datelike + Timelike>(out: &mut Vec<u8>, dt: &T) {
    let year = dt.year();
    if (0..10000).contains(&year) {
        let y = year.unsigned_abs();
        push_2(out, y / 100);
        push_2(out, y % 100);
    } else {
        out.extend_from_slice(year.to_string().as_bytes());
    }
    out.push(b'-');
    push_2(out, dt.month());
    out.push(b'-');
    push_2(out, dt.day());
    out.push(b'T');
    push_2(out, dt.hour());
    out.push(b':');
    push_2(out, dt.minute());
    out.push(b':');
    push_2(out, dt.second());
}

/// `Z` for UTC, else `±hh:mm`, as Go's `Z07:00`.
fn push_offset(out: &mut Vec<u8>, offset: FixedOffset) {
    let secs = offset.local_minus_utc();
    if secs == 0 {
        out.push(b'Z');
        return;
    }
    out.push(if secs < 0 { b'-' } else { b'+' });
    let minutes = secs.unsigned_abs() / 60;
    push_2(out, minutes / 60);
    out.push(b':');
    push_2(out, minutes % 60);
}

/// Formats UTC RFC 3339 with nanoseconds (Go's `time.RFC3339Nano`), caching
/// the part up to the seconds so a chatty container pays for the calendar
/// arithmetic once a second.
#[derive(Debug, Default)]
pub(crate) struct Rfc3339Nano {
    cached_secs: Option<i64>,
    prefix: Vec<u8>,
}

impl Rfc3339Nano {
    pub(crate) fn push(&mut self, out: &mut Vec<u8>, t: SystemTime) {
        let (secs, nanos) = split(t);
        if self.cached_secs != Some(secs) {
            self.prefix.clear();
            let dt = DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default();
            push_date_time(&mut self.prefix, &dt);
            self.cached_secs = Some(secs);
        }
        out.extend_from_slice(&self.prefix);
        push_fraction(out, nanos, 9);
        out.push(b'Z');
    }
}

/// RFC 3339 with any offset and up to nine fraction digits.
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let dt = DateTime::parse_from_rfc3339(s).ok()?;
    Some(join(dt.timestamp(), dt.timestamp_subsec_nanos()))
}

fn local(t: SystemTime) -> DateTime<FixedOffset> {
    let (secs, nanos) = split(t);
    let utc = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap_or_default();
    let offset = Local.offset_from_utc_datetime(&utc.naive_utc()).fix();
    utc.with_timezone(&offset)
}

/// Go's `time.Stamp` in local time: `Jan _2 15:04:05`.
pub(crate) fn push_stamp(out: &mut Vec<u8>, t: SystemTime) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let dt = local(t);
    out.extend_from_slice(MONTHS[dt.month0() as usize % 12]);
    out.push(b' ');
    let day = dt.day();
    out.push(if day >= 10 {
        b'0' + (day / 10) as u8
    } else {
        b' '
    });
    out.push(b'0' + (day % 10) as u8);
    out.push(b' ');
    push_2(out, dt.hour());
    out.push(b':');
    push_2(out, dt.minute());
    out.push(b':');
    push_2(out, dt.second());
}

/// Local time, RFC 3339 with the local offset and at most `digits` fraction
/// digits (0: Go's `time.RFC3339`; 6: `2006-01-02T15:04:05.999999Z07:00`).
pub(crate) fn push_local_rfc3339(out: &mut Vec<u8>, t: SystemTime, digits: u32) {
    let dt = local(t);
    push_date_time(out, &dt);
    if digits > 0 {
        push_fraction(out, dt.nanosecond() % 1_000_000_000, digits);
    }
    push_offset(out, *dt.offset());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fmt(t: SystemTime) -> String {
        let mut out = Vec::new();
        Rfc3339Nano::default().push(&mut out, t);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn rfc3339nano_trims_trailing_zeros_like_go() {
        let base = 1_704_067_200; // 2024-01-01T00:00:00Z
        assert_eq!(
            fmt(join(base, 123_456_789)),
            "2024-01-01T00:00:00.123456789Z"
        );
        assert_eq!(fmt(join(base, 120_000_000)), "2024-01-01T00:00:00.12Z");
        assert_eq!(fmt(join(base, 0)), "2024-01-01T00:00:00Z");
        assert_eq!(
            fmt(join(base + 86_399, 1)),
            "2024-01-01T23:59:59.000000001Z"
        );
        assert_eq!(fmt(join(-1, 500_000_000)), "1969-12-31T23:59:59.5Z");
    }

    #[test]
    fn parse_keeps_nanoseconds_and_offsets() {
        let t = parse_rfc3339("2024-01-01T00:00:00.123456789Z");
        assert_eq!(t, Some(join(1_704_067_200, 123_456_789)));
        let t = parse_rfc3339("2024-01-01T02:00:00.5+02:00");
        assert_eq!(t, Some(join(1_704_067_200, 500_000_000)));
        assert_eq!(parse_rfc3339("2024-01-01 00:00"), None);
    }

    #[test]
    fn unix_nanos_round_trip_before_and_after_the_epoch() {
        for t in [join(1_704_067_200, 7), join(-5, 999_999_999), join(0, 0)] {
            assert_eq!(from_unix_nanos(to_unix_nanos(t)), t);
        }
    }
}
