//! Event times: the forms senders use, parsed strictly, written as UTC milliseconds.
//!
//! Accepted (normalization contract, section 8): RFC 3339 with `Z` or an offset (`±HH:MM` or
//! `±HHMM`, optionally after one space, as Snowflake writes it), `T` or a space between date
//! and time, any number of fraction digits (truncated to milliseconds, never rounded), no zone
//! (read as UTC), a bare date (midnight UTC), and JSON numbers: below 1e11 epoch seconds, from
//! 1e11 epoch milliseconds, fractions truncated. Everything else does not parse, including
//! digit strings (`"1719826200"`: a string is not a number), non-padded dates, negative epochs
//! and years outside 0000-9999.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde_json::Value;

/// Milliseconds since the Unix epoch, if `value` is an event time this layer understands.
pub fn parse(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => parse_str(s),
        Value::Number(n) => parse_epoch(&n.to_string()),
        _ => None,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.sssZ`, three fraction digits, UTC.
pub fn format_ms(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => "1970-01-01T00:00:00.000Z".to_string(),
    }
}

const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

fn parse_str(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let date = parse_date(b.get(0..10)?)?;
    if b.len() == 10 {
        return Some(date.and_time(NaiveTime::MIN).and_utc().timestamp_millis());
    }
    if b[10] != b'T' && b[10] != b' ' {
        return None;
    }
    let rest = &b[11..];
    let hh = two(rest.get(0..2)?)?;
    if rest.get(2) != Some(&b':') {
        return None;
    }
    let mi = two(rest.get(3..5)?)?;
    if rest.get(5) != Some(&b':') {
        return None;
    }
    let ss = two(rest.get(6..8)?)?;
    let mut i = 8;
    let mut millis = 0u32;
    if rest.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while rest.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = &rest[start..i];
        if frac.is_empty() {
            return None;
        }
        for k in 0..3 {
            millis = millis * 10 + frac.get(k).map_or(0, |d| (d - b'0') as u32);
        }
    }
    let time = NaiveTime::from_hms_milli_opt(hh, mi, ss, millis)?;
    let local = NaiveDateTime::new(date, time);
    let offset_secs = parse_zone(&rest[i..])?;
    let ms = local.and_utc().timestamp_millis() - offset_secs * 1000;
    Some(ms)
}

/// Offset in seconds east of UTC. Empty means UTC.
fn parse_zone(z: &[u8]) -> Option<i64> {
    let z = z.strip_prefix(b" ").unwrap_or(z);
    match z {
        [] => Some(0),
        [b'Z'] | [b'z'] => Some(0),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [h1, h2, b':', m1, m2] => (two(&[*h1, *h2])?, two(&[*m1, *m2])?),
                [h1, h2, m1, m2] => (two(&[*h1, *h2])?, two(&[*m1, *m2])?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let secs = (h * 3600 + m * 60) as i64;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => None,
    }
}

fn parse_date(b: &[u8]) -> Option<NaiveDate> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&b[0..4])?;
    let m = two(&b[5..7])?;
    let d = two(&b[8..10])?;
    NaiveDate::from_ymd_opt(y as i32, m, d)
}

fn two(b: &[u8]) -> Option<u32> {
    (b.len() == 2).then(|| digits(b)).flatten()
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |acc, d| acc * 10 + (d - b'0') as u32))
}

/// Epoch seconds (< 1e11) or milliseconds (>= 1e11) from a JSON number's exact lexeme,
/// truncated to whole milliseconds with decimal arithmetic (no float rounding).
fn parse_epoch(lexeme: &str) -> Option<i64> {
    let (mantissa, exp10) = decimal(lexeme)?;
    // integer part of the value
    let whole = shift_truncate(&mantissa, exp10)?;
    let ms = if whole < 100_000_000_000 { shift_truncate(&mantissa, exp10 + 3)? } else { whole };
    (0..=MAX_MS as i128).contains(&ms).then_some(ms as i64)
}

/// `lexeme` = mantissa digits × 10^exp. Negative numbers are refused.
fn decimal(lexeme: &str) -> Option<(String, i32)> {
    let (num, exp) = match lexeme.find(['e', 'E']) {
        Some(i) => (&lexeme[..i], lexeme[i + 1..].parse::<i32>().ok()?),
        None => (lexeme, 0),
    };
    if num.starts_with('-') {
        return None;
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut m = format!("{int}{frac}");
    let trimmed = m.trim_start_matches('0').len();
    m = m.split_off(m.len() - trimmed.max(1).min(m.len()));
    if m.len() > 40 || exp.abs() > 40 {
        return None;
    }
    Some((m, exp - frac.len() as i32))
}

/// Integer part of mantissa × 10^exp (truncated toward zero).
fn shift_truncate(mantissa: &str, exp: i32) -> Option<i128> {
    let digits: String = if exp >= 0 {
        format!("{mantissa}{}", "0".repeat(exp as usize))
    } else {
        let cut = mantissa.len() as i32 + exp;
        if cut <= 0 {
            "0".to_string()
        } else {
            mantissa[..cut as usize].to_string()
        }
    };
    if digits.len() > 30 {
        return None;
    }
    digits.parse::<i128>().ok()
}

/// Parse for display/tests: ms → `DateTime`.
pub fn to_datetime(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(v: Value) -> Option<String> {
        parse(&v).map(format_ms)
    }

    #[test]
    fn contract_table() {
        let cases = [
            (json!("2024-07-01T09:30:00Z"), "2024-07-01T09:30:00.000Z"),
            (json!("2024-07-01T09:30:00.123456789-0530"), "2024-07-01T15:00:00.123Z"),
            (json!("2024-07-01 09:30:00+01:00"), "2024-07-01T08:30:00.000Z"),
            (json!("2024-07-01T09:30:00"), "2024-07-01T09:30:00.000Z"),
            (json!("2024-07-01"), "2024-07-01T00:00:00.000Z"),
            (json!("2024-07-01 09:30:00.250 +0100"), "2024-07-01T08:30:00.250Z"),
            (json!(1719826200), "2024-07-01T09:30:00.000Z"),
            (json!(1719826200000u64), "2024-07-01T09:30:00.000Z"),
            (json!("2025-03-04T10:11:12.345678+02:00"), "2025-03-04T08:11:12.345Z"),
            (json!("2024-07-01T09:30:00.9999Z"), "2024-07-01T09:30:00.999Z"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input.clone()).as_deref(), Some(want), "input {input}");
        }
    }

    #[test]
    fn fractional_epochs_truncate_exactly() {
        let v: Value = serde_json::from_str("1719826200.1239").unwrap();
        assert_eq!(norm(v).as_deref(), Some("2024-07-01T09:30:00.123Z"));
        let v: Value = serde_json::from_str("1.7198262001e9").unwrap();
        assert_eq!(norm(v).as_deref(), Some("2024-07-01T09:30:00.100Z"));
        let v: Value = serde_json::from_str("1719826200000.9").unwrap();
        assert_eq!(norm(v).as_deref(), Some("2024-07-01T09:30:00.000Z"));
    }

    #[test]
    fn refuses_what_the_contract_refuses() {
        for bad in [
            json!("2024-7-1T09:30:00Z"),
            json!("Mon Jul 01 2024 09:30:00 GMT+0000 (Coordinated Universal Time)"),
            json!("1719826200"),
            json!("2024-07-01T09:30Z"),
            json!("2024-02-30T00:00:00Z"),
            json!("2024-07-01T24:00:00Z"),
            json!("2024-07-01T09:30:00+2500"),
            json!("2024-07-01T09:30:00."),
            json!(-5),
            json!(true),
            json!(null),
            json!(""),
        ] {
            assert_eq!(norm(bad.clone()), None, "{bad} should not parse");
        }
    }
}
