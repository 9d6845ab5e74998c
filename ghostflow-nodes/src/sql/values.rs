//! JSON forms of values shared by the three databases.

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use serde_json::Value;

/// Bytes as standard base64 with padding.
pub(crate) fn base64_text(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A float as a JSON number; `NaN`, `Infinity` and `-Infinity`, which
/// JSON has no numbers for, as those strings.
pub(crate) fn float_json(f: f64) -> Value {
    match serde_json::Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".to_owned()),
        None if f > 0.0 => Value::String("Infinity".to_owned()),
        None => Value::String("-Infinity".to_owned()),
    }
}

/// A value as text for a text parameter: strings as they are, other
/// values as their JSON.
pub(crate) fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `YYYY-MM-DD`.
pub(crate) fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a date (YYYY-MM-DD)"))
}

/// `HH:MM`, `HH:MM:SS` or `HH:MM:SS.ffffff`.
pub(crate) fn parse_time(text: &str) -> Result<NaiveTime, String> {
    let t = text.trim();
    NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
        .map_err(|_| format!("`{text}` is not a time (HH:MM:SS)"))
}

/// A date and time without offset: `YYYY-MM-DDTHH:MM[:SS[.f]]` (or with a
/// space for the `T`), or a date alone (midnight).
pub(crate) fn parse_naive_datetime(text: &str) -> Result<NaiveDateTime, String> {
    let t = text.trim();
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(at) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(at);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(date.and_time(NaiveTime::MIN));
    }
    Err(format!(
        "`{text}` is not a timestamp (YYYY-MM-DDTHH:MM:SS, optionally with an offset)"
    ))
}

/// A date and time with an offset: RFC 3339 (`2024-05-01T10:00:00+02:00`,
/// `...Z`), or the same with a space for the `T`.
pub(crate) fn parse_offset_datetime(text: &str) -> Result<DateTime<FixedOffset>, String> {
    let t = text.trim();
    DateTime::parse_from_rfc3339(t)
        .or_else(|_| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%:z"))
        .or_else(|_| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .map_err(|_| format!("`{text}` is not an RFC 3339 timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_and_times_have_one_json_form() {
        assert_eq!(float_json(1.5), serde_json::json!(1.5));
        assert_eq!(float_json(f64::NAN), serde_json::json!("NaN"));
        assert_eq!(float_json(f64::INFINITY), serde_json::json!("Infinity"));
        assert_eq!(
            float_json(f64::NEG_INFINITY),
            serde_json::json!("-Infinity")
        );
        assert_eq!(
            parse_naive_datetime("2024-05-01 10:30")
                .unwrap()
                .to_string(),
            "2024-05-01 10:30:00"
        );
        assert_eq!(
            parse_naive_datetime("2024-05-01").unwrap().to_string(),
            "2024-05-01 00:00:00"
        );
        assert_eq!(
            parse_offset_datetime("2024-05-01T10:30:00.5+02:00")
                .unwrap()
                .to_rfc3339(),
            "2024-05-01T10:30:00.500+02:00"
        );
        assert!(parse_offset_datetime("2024-05-01T10:30:00").is_err());
        assert_eq!(parse_time("07:05").unwrap().to_string(), "07:05:00");
        assert!(parse_date("01/05/2024").is_err());
    }
}
