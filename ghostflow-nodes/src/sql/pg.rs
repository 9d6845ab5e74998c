//! PostgreSQL: JSON parameters encoded for the type the server infers for
//! each placeholder, and values decoded from PostgreSQL's binary format.
//!
//! The statement is prepared first, so the server says what each `$n` is
//! (`int4`, `date`, `jsonb`, `text[]`...); each JSON value is then encoded
//! as exactly that type. A date written as `"2024-05-01"` therefore binds to
//! a `date` column without a cast.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeDelta, Utc};
use serde_json::Value;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgTypeKind, PgValueFormat, PgValueRef};
use sqlx::{Encode, Postgres, Type, TypeInfo, ValueRef};

use super::values::{
    base64_text, float_json, parse_date, parse_naive_datetime, parse_offset_datetime, parse_time,
    text_of,
};

const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const CHAR: u32 = 18;
const NAME: u32 = 19;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const OID: u32 = 26;
const JSON: u32 = 114;
const XML: u32 = 142;
const CIDR: u32 = 650;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const UNKNOWN: u32 = 705;
const MACADDR8: u32 = 774;
const MACADDR: u32 = 829;
const INET: u32 = 869;
const BPCHAR: u32 = 1042;
const VARCHAR: u32 = 1043;
const DATE: u32 = 1082;
const TIME: u32 = 1083;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const INTERVAL: u32 = 1186;
const TIMETZ: u32 = 1266;
const BIT: u32 = 1560;
const VARBIT: u32 = 1562;
const NUMERIC: u32 = 1700;
const UUID: u32 = 2950;
const JSONB: u32 = 3802;

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// 2000-01-01, PostgreSQL's epoch for dates and timestamps.
fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// Whether a type is text on the wire (and so takes any string).
fn is_textual(ty: &PgTypeInfo) -> bool {
    matches!(ty.kind(), PgTypeKind::Enum(_))
        || matches!(
            ty.oid().map(|o| o.0),
            Some(TEXT | VARCHAR | BPCHAR | NAME | UNKNOWN | XML)
        )
        || ty.name().eq_ignore_ascii_case("citext")
}

// ------------------------------------------------------------- parameters

/// One parameter, already in PostgreSQL's binary format for `ty`.
#[derive(Debug)]
pub(crate) struct PgParam {
    ty: PgTypeInfo,
    bytes: Option<Vec<u8>>,
}

impl Type<Postgres> for PgParam {
    fn type_info() -> PgTypeInfo {
        // Never used: every value says its own type (`produces`).
        PgTypeInfo::with_name("unknown")
    }
}

impl Encode<'_, Postgres> for PgParam {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        match &self.bytes {
            Some(bytes) => {
                buf.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(self.ty.clone())
    }

    fn size_hint(&self) -> usize {
        self.bytes.as_ref().map_or(0, Vec::len)
    }
}

/// Encodes `value` as a parameter of type `ty`; the error says what was
/// expected.
pub(crate) fn param(ty: &PgTypeInfo, value: &Value) -> Result<PgParam, String> {
    Ok(PgParam {
        ty: ty.clone(),
        bytes: encode(ty, value)?,
    })
}

fn encode(ty: &PgTypeInfo, value: &Value) -> Result<Option<Vec<u8>>, String> {
    if value.is_null() {
        return Ok(None);
    }
    match ty.kind() {
        PgTypeKind::Domain(base) => return encode(base, value),
        PgTypeKind::Array(element) => return encode_array(element, value).map(Some),
        _ => {}
    }
    if is_textual(ty) {
        return Ok(Some(text_of(value).into_bytes()));
    }
    let expected = |what: &str| {
        format!(
            "expected {what} for `{}`, got {}",
            ty.name(),
            describe(value)
        )
    };
    let bytes = match ty.oid().map(|o| o.0) {
        Some(BOOL) => match value {
            Value::Bool(b) => vec![u8::from(*b)],
            Value::String(s) if s.eq_ignore_ascii_case("true") => vec![1],
            Value::String(s) if s.eq_ignore_ascii_case("false") => vec![0],
            _ => return Err(expected("a boolean")),
        },
        Some(INT2) => i16::try_from(integer(value).ok_or_else(|| expected("an integer"))?)
            .map_err(|_| expected("an integer from -32768 to 32767"))?
            .to_be_bytes()
            .to_vec(),
        Some(INT4) => i32::try_from(integer(value).ok_or_else(|| expected("an integer"))?)
            .map_err(|_| expected("a 32-bit integer"))?
            .to_be_bytes()
            .to_vec(),
        Some(INT8) => i64::try_from(integer(value).ok_or_else(|| expected("an integer"))?)
            .map_err(|_| expected("a 64-bit integer"))?
            .to_be_bytes()
            .to_vec(),
        Some(OID) => u32::try_from(integer(value).ok_or_else(|| expected("an integer"))?)
            .map_err(|_| expected("an unsigned 32-bit integer"))?
            .to_be_bytes()
            .to_vec(),
        Some(FLOAT4) => {
            let f = float(value).ok_or_else(|| expected("a number"))?;
            #[expect(
                clippy::cast_possible_truncation,
                reason = "float4 is single precision"
            )]
            let single = f as f32;
            single.to_be_bytes().to_vec()
        }
        Some(FLOAT8) => float(value)
            .ok_or_else(|| expected("a number"))?
            .to_be_bytes()
            .to_vec(),
        Some(NUMERIC) => {
            let text = match value {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.trim().to_owned(),
                _ => return Err(expected("a number or a decimal string")),
            };
            encode_numeric(&text).map_err(|e| format!("{e} (for `{}`)", ty.name()))?
        }
        Some(CHAR) => match value {
            Value::String(s) if s.len() == 1 => s.as_bytes().to_vec(),
            _ => return Err(expected("a one-character string")),
        },
        Some(JSON) => serde_json::to_vec(value).map_err(|e| e.to_string())?,
        Some(JSONB) => {
            let mut bytes = vec![1];
            bytes.extend(serde_json::to_vec(value).map_err(|e| e.to_string())?);
            bytes
        }
        Some(UUID) => {
            let text = value.as_str().ok_or_else(|| expected("a UUID string"))?;
            sqlx::types::Uuid::parse_str(text.trim())
                .map_err(|e| format!("`{text}` is not a UUID: {e}"))?
                .as_bytes()
                .to_vec()
        }
        Some(DATE) => {
            let text = value
                .as_str()
                .ok_or_else(|| expected("a date string (YYYY-MM-DD)"))?;
            let days = match text.trim() {
                "infinity" => i32::MAX,
                "-infinity" => i32::MIN,
                t => {
                    let date = parse_date(t)?;
                    let days = date.signed_duration_since(epoch().date()).num_days();
                    i32::try_from(days).map_err(|_| format!("the date `{text}` is out of range"))?
                }
            };
            days.to_be_bytes().to_vec()
        }
        Some(TIME) => {
            let text = value
                .as_str()
                .ok_or_else(|| expected("a time string (HH:MM:SS)"))?;
            let micros = if text.trim() == "24:00:00" {
                DAY_MICROS
            } else {
                let time = parse_time(text)?;
                (time - NaiveTime::MIN)
                    .num_microseconds()
                    .unwrap_or_default()
            };
            micros.to_be_bytes().to_vec()
        }
        Some(TIMESTAMP) => {
            let text = value
                .as_str()
                .ok_or_else(|| expected("a timestamp string (YYYY-MM-DDTHH:MM:SS)"))?;
            let micros = match text.trim() {
                "infinity" => i64::MAX,
                "-infinity" => i64::MIN,
                // An offset is ignored, as PostgreSQL does for this type:
                // the wall-clock time is kept.
                t => timestamp_micros(match parse_offset_datetime(t) {
                    Ok(with_offset) => with_offset.naive_local(),
                    Err(_) => parse_naive_datetime(t)?,
                })
                .ok_or_else(|| format!("the timestamp `{text}` is out of range"))?,
            };
            micros.to_be_bytes().to_vec()
        }
        Some(TIMESTAMPTZ) => {
            let text = value
                .as_str()
                .ok_or_else(|| expected("an RFC 3339 timestamp string"))?;
            let micros = match text.trim() {
                "infinity" => i64::MAX,
                "-infinity" => i64::MIN,
                // Without an offset, the time is taken as UTC.
                t => timestamp_micros(match parse_offset_datetime(t) {
                    Ok(with_offset) => with_offset.naive_utc(),
                    Err(_) => parse_naive_datetime(t)?,
                })
                .ok_or_else(|| format!("the timestamp `{text}` is out of range"))?,
            };
            micros.to_be_bytes().to_vec()
        }
        Some(BYTEA) => {
            let text = value.as_str().ok_or_else(|| expected("a base64 string"))?;
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| format!("expected base64 for `{}`: {e}", ty.name()))?
        }
        _ => {
            return Err(format!(
                "the type `{}` cannot be bound from JSON; bind text and cast it in the SQL (`$n::text::{}`)",
                ty.name(),
                ty.name().to_lowercase()
            ));
        }
    };
    Ok(Some(bytes))
}

/// `value`'s kind, with the value when it is short.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) if s.len() <= 40 => format!("the string `{s}`"),
        Value::Number(n) => format!("the number {n}"),
        other => crate::kind(other).to_owned(),
    }
}

/// An integer given as a JSON integer or a string of digits.
fn integer(value: &Value) -> Option<i128> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A float given as a JSON number, a numeric string, or `NaN`,
/// `Infinity`, `-Infinity`.
fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.trim() {
            "NaN" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            t => t.parse().ok(),
        },
        _ => None,
    }
}

/// Microseconds since PostgreSQL's epoch.
fn timestamp_micros(at: NaiveDateTime) -> Option<i64> {
    at.signed_duration_since(epoch()).num_microseconds()
}

/// A one-dimensional array of `element` from a JSON array.
fn encode_array(element: &PgTypeInfo, value: &Value) -> Result<Vec<u8>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "expected an array for `{}[]`, got {}",
            element.name(),
            crate::kind(value)
        ));
    };
    let oid = element.oid().ok_or_else(|| {
        format!(
            "the element type `{}` is not known to the server",
            element.name()
        )
    })?;
    let mut out = Vec::new();
    let len = i32::try_from(items.len()).map_err(|_| "the array is too long".to_owned())?;
    out.extend(1i32.to_be_bytes());
    out.extend(i32::from(items.iter().any(Value::is_null)).to_be_bytes());
    out.extend(oid.0.to_be_bytes());
    out.extend(len.to_be_bytes());
    out.extend(1i32.to_be_bytes());
    for (i, item) in items.iter().enumerate() {
        if item.is_array() && !matches!(element.oid().map(|o| o.0), Some(JSON | JSONB)) {
            return Err(
                "multi-dimensional arrays cannot be bound; pass a one-dimensional array".to_owned(),
            );
        }
        match encode(element, item).map_err(|e| format!("[{i}]: {e}"))? {
            Some(bytes) => {
                let n =
                    i32::try_from(bytes.len()).map_err(|_| "an element is too large".to_owned())?;
                out.extend(n.to_be_bytes());
                out.extend(bytes);
            }
            None => out.extend((-1i32).to_be_bytes()),
        }
    }
    Ok(out)
}

/// A decimal text (`-12.50`, `1e-3`, `NaN`, `Infinity`) in the binary
/// `numeric` format, keeping its scale.
pub(crate) fn encode_numeric(text: &str) -> Result<Vec<u8>, String> {
    let header = |ndigits: i16, weight: i16, sign: u16, dscale: u16| {
        let mut out = Vec::new();
        out.extend(ndigits.to_be_bytes());
        out.extend(weight.to_be_bytes());
        out.extend(sign.to_be_bytes());
        out.extend(dscale.to_be_bytes());
        out
    };
    match text {
        "NaN" => return Ok(header(0, 0, 0xC000, 0)),
        "Infinity" | "inf" => return Ok(header(0, 0, 0xD000, 0)),
        "-Infinity" | "-inf" => return Ok(header(0, 0, 0xF000, 0)),
        _ => {}
    }
    let bad = || format!("`{text}` is not a decimal number");
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (
            &rest[..at],
            rest[at + 1..].parse::<i32>().map_err(|_| bad())?,
        ),
        None => (rest, 0),
    };
    if !(-1000..=1000).contains(&exponent) {
        return Err(format!("`{text}`: the exponent is out of range"));
    }
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let digits: String = [int_part, frac_part].concat();
    // Where the decimal point falls in `digits`, after the exponent.
    let point = i64::try_from(int_part.len()).unwrap_or(i64::MAX) + i64::from(exponent);
    let (integer, fraction) = if point <= 0 {
        (
            String::new(),
            "0".repeat(usize::try_from(-point).unwrap_or(0)) + &digits,
        )
    } else {
        let point = usize::try_from(point).unwrap_or(usize::MAX);
        if point >= digits.len() {
            (
                digits.clone() + &"0".repeat(point - digits.len()),
                String::new(),
            )
        } else {
            (digits[..point].to_owned(), digits[point..].to_owned())
        }
    };
    let integer = integer.trim_start_matches('0');
    let dscale = u16::try_from(fraction.len()).map_err(|_| bad())?;
    // Base-10000 groups: the integer padded on the left, the fraction on
    // the right.
    let int_padded = format!("{}{integer}", "0".repeat((4 - integer.len() % 4) % 4));
    let frac_padded = format!("{fraction}{}", "0".repeat((4 - fraction.len() % 4) % 4));
    let mut groups: Vec<i16> = int_padded
        .as_bytes()
        .chunks(4)
        .chain(frac_padded.as_bytes().chunks(4))
        .map(|c| {
            std::str::from_utf8(c)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    let mut weight = i64::try_from(int_padded.len() / 4).unwrap_or(0) - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= i64::try_from(leading).unwrap_or(0);
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        return Ok(header(0, 0, 0, dscale));
    }
    let ndigits = i16::try_from(groups.len()).map_err(|_| bad())?;
    let weight = i16::try_from(weight).map_err(|_| bad())?;
    let mut out = header(ndigits, weight, if negative { 0x4000 } else { 0 }, dscale);
    for g in groups {
        out.extend(g.to_be_bytes());
    }
    Ok(out)
}

// ----------------------------------------------------------------- values

/// A reader of binary values.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err("the value is shorter than its type says".to_owned());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, String> {
        self.array().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, String> {
        self.array().map(i32::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_be_bytes)
    }

    fn i64(&mut self) -> Result<i64, String> {
        self.array().map(i64::from_be_bytes)
    }

    /// A length-prefixed value; `None` for NULL.
    fn value(&mut self) -> Result<Option<&'a [u8]>, String> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(None);
        }
        self.take(usize::try_from(len).unwrap_or(usize::MAX))
            .map(Some)
    }
}

/// The JSON of a value read from a row.
pub(crate) fn value(raw: &PgValueRef<'_>) -> Result<Value, String> {
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let ty = raw.type_info().into_owned();
    match raw.format() {
        PgValueFormat::Binary => {
            let bytes = raw.as_bytes().map_err(|e| e.to_string())?;
            decode(&ty, bytes)
        }
        // Only statements run without parameters could come back as text;
        // the nodes always prepare theirs.
        PgValueFormat::Text => raw
            .as_str()
            .map(|s| Value::String(s.to_owned()))
            .map_err(|e| e.to_string()),
    }
}

fn utf8(bytes: &[u8]) -> Result<Value, String> {
    std::str::from_utf8(bytes)
        .map(|s| Value::String(s.to_owned()))
        .map_err(|_| "the text is not UTF-8".to_owned())
}

fn decode(ty: &PgTypeInfo, bytes: &[u8]) -> Result<Value, String> {
    match ty.kind() {
        PgTypeKind::Domain(base) => return decode(base, bytes),
        PgTypeKind::Enum(_) => return utf8(bytes),
        PgTypeKind::Array(element) => return decode_array(element, bytes),
        PgTypeKind::Composite(fields) => return decode_composite(fields, bytes),
        _ => {}
    }
    if is_textual(ty) {
        return utf8(bytes);
    }
    let mut r = Reader { buf: bytes };
    Ok(match ty.oid().map(|o| o.0) {
        Some(BOOL) => Value::Bool(r.array::<1>()?[0] != 0),
        Some(INT2) => Value::from(r.i16()?),
        Some(INT4) => Value::from(r.i32()?),
        Some(INT8) => Value::from(r.i64()?),
        Some(OID) => Value::from(r.u32()?),
        Some(FLOAT4) => {
            let f = f32::from_be_bytes(r.array()?);
            // Through its shortest text, so that 0.1 stays 0.1.
            float_json(f.to_string().parse().unwrap_or(f64::from(f)))
        }
        Some(FLOAT8) => float_json(f64::from_be_bytes(r.array()?)),
        Some(NUMERIC) => Value::String(decode_numeric(&mut r)?),
        Some(CHAR) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        Some(JSON) => serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?,
        Some(JSONB) => {
            let (version, text) = bytes.split_first().ok_or("an empty jsonb value")?;
            if *version != 1 {
                return Err(format!("unknown jsonb version {version}"));
            }
            serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?
        }
        Some(UUID) => Value::String(sqlx::types::Uuid::from_bytes(r.array()?).to_string()),
        Some(DATE) => Value::String(match r.i32()? {
            i32::MAX => "infinity".to_owned(),
            i32::MIN => "-infinity".to_owned(),
            days => epoch()
                .date()
                .checked_add_signed(TimeDelta::days(i64::from(days)))
                .ok_or("the date is out of range")?
                .format("%Y-%m-%d")
                .to_string(),
        }),
        Some(TIME) => Value::String(time_text(r.i64()?)?),
        Some(TIMETZ) => {
            let time = time_text(r.i64()?)?;
            // Seconds west of UTC.
            let west = r.i32()?;
            Value::String(format!("{time}{}", offset_text(-west)))
        }
        Some(TIMESTAMP) => Value::String(match r.i64()? {
            i64::MAX => "infinity".to_owned(),
            i64::MIN => "-infinity".to_owned(),
            micros => timestamp(micros)?
                .format("%Y-%m-%dT%H:%M:%S%.f")
                .to_string(),
        }),
        Some(TIMESTAMPTZ) => Value::String(match r.i64()? {
            i64::MAX => "infinity".to_owned(),
            i64::MIN => "-infinity".to_owned(),
            micros => DateTime::<Utc>::from_naive_utc_and_offset(timestamp(micros)?, Utc)
                .to_rfc3339_opts(SecondsFormat::AutoSi, false),
        }),
        Some(INTERVAL) => {
            let micros = r.i64()?;
            let days = r.i32()?;
            let months = r.i32()?;
            Value::String(interval_text(months, days, micros))
        }
        Some(BYTEA) => Value::String(base64_text(bytes)),
        Some(INET | CIDR) => Value::String(inet_text(&mut r)?),
        Some(MACADDR | MACADDR8) => Value::String(
            bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        ),
        Some(BIT | VARBIT) => {
            let len = usize::try_from(r.i32()?).unwrap_or(0);
            let data = r.buf;
            Value::String(
                (0..len)
                    .map(|i| {
                        let set = data
                            .get(i / 8)
                            .is_some_and(|byte| byte & (0x80 >> (i % 8)) != 0);
                        if set { '1' } else { '0' }
                    })
                    .collect(),
            )
        }
        _ => return Err(unsupported(ty)),
    })
}

/// The message for a column of a type the nodes do not read.
fn unsupported(ty: &PgTypeInfo) -> String {
    format!(
        "the type `{}` has no JSON form here; cast the column to text in the SQL (`column::text`)",
        ty.name()
    )
}

fn timestamp(micros: i64) -> Result<NaiveDateTime, String> {
    epoch()
        .checked_add_signed(TimeDelta::microseconds(micros))
        .ok_or_else(|| "the timestamp is out of range".to_owned())
}

fn time_text(micros: i64) -> Result<String, String> {
    if micros == DAY_MICROS {
        return Ok("24:00:00".to_owned());
    }
    let secs =
        u32::try_from(micros.div_euclid(1_000_000)).map_err(|_| "the time is out of range")?;
    let nanos = u32::try_from(micros.rem_euclid(1_000_000) * 1000).unwrap_or(0);
    NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
        .map(|t| t.format("%H:%M:%S%.f").to_string())
        .ok_or_else(|| "the time is out of range".to_owned())
}

/// `+HH:MM` (or `+HH:MM:SS`) for an offset east of UTC in seconds.
fn offset_text(east: i32) -> String {
    let sign = if east < 0 { '-' } else { '+' };
    let east = east.unsigned_abs();
    let (h, m, s) = (east / 3600, east / 60 % 60, east % 60);
    if s == 0 {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}:{m:02}:{s:02}")
    }
}

/// An ISO 8601 duration, each part with its own sign as PostgreSQL's
/// `iso_8601` style writes it: `P1Y2M3DT4H5M6.5S`, `PT-1H-30M`.
fn interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut out = String::from("P");
    let (years, months) = (months / 12, months % 12);
    for (n, unit) in [(years, 'Y'), (months, 'M'), (days, 'D')] {
        if n != 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if micros != 0 {
        out.push('T');
        let sign = if micros < 0 { "-" } else { "" };
        let abs = micros.unsigned_abs();
        let hours = abs / 3_600_000_000;
        let minutes = abs / 60_000_000 % 60;
        let seconds = abs / 1_000_000 % 60;
        let fraction = abs % 1_000_000;
        if hours != 0 {
            out.push_str(&format!("{sign}{hours}H"));
        }
        if minutes != 0 {
            out.push_str(&format!("{sign}{minutes}M"));
        }
        if seconds != 0 || fraction != 0 {
            let fraction = if fraction == 0 {
                String::new()
            } else {
                format!(".{fraction:06}").trim_end_matches('0').to_owned()
            };
            out.push_str(&format!("{sign}{seconds}{fraction}S"));
        }
    }
    if out == "P" {
        out.push_str("T0S");
    }
    out
}

/// `numeric` as the decimal text PostgreSQL prints, scale kept.
fn decode_numeric(r: &mut Reader<'_>) -> Result<String, String> {
    let ndigits = usize::try_from(r.i16()?).map_err(|_| "a malformed numeric")?;
    let weight = i64::from(r.i16()?);
    let sign = u16::from_be_bytes(r.array()?);
    let dscale = usize::from(u16::from_be_bytes(r.array()?));
    match sign {
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        _ => {}
    }
    let digits = (0..ndigits)
        .map(|_| r.i16())
        .collect::<Result<Vec<_>, _>>()?;
    let group = |k: i64| -> i16 {
        usize::try_from(k)
            .ok()
            .and_then(|k| digits.get(k).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 && !digits.is_empty() {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                out.push_str(&group(k).to_string());
            } else {
                out.push_str(&format!("{:04}", group(k)));
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut k = weight + 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", group(k)));
            k += 1;
        }
        fraction.truncate(dscale);
        out.push('.');
        out.push_str(&fraction);
    }
    Ok(out)
}

fn inet_text(r: &mut Reader<'_>) -> Result<String, String> {
    let [family, bits, _is_cidr, len] = r.array::<4>()?;
    let addr = r.take(usize::from(len))?;
    let (ip, full) = match (family, addr.len()) {
        (2, 4) => (
            IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
            32,
        ),
        (3, 16) => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(addr);
            (IpAddr::V6(Ipv6Addr::from(octets)), 128)
        }
        _ => return Err("a malformed network address".to_owned()),
    };
    Ok(if bits == full {
        ip.to_string()
    } else {
        format!("{ip}/{bits}")
    })
}

/// A (possibly multi-dimensional) array as nested JSON arrays.
fn decode_array(element: &PgTypeInfo, bytes: &[u8]) -> Result<Value, String> {
    let mut r = Reader { buf: bytes };
    let ndim = usize::try_from(r.i32()?).map_err(|_| "a malformed array")?;
    let _has_null = r.i32()?;
    let _element_oid = r.u32()?;
    if ndim == 0 {
        return Ok(Value::Array(Vec::new()));
    }
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        dims.push(usize::try_from(r.i32()?).map_err(|_| "a malformed array")?);
        let _lower_bound = r.i32()?;
    }
    fn level(r: &mut Reader<'_>, element: &PgTypeInfo, dims: &[usize]) -> Result<Value, String> {
        let (&n, inner) = dims.split_first().ok_or("a malformed array")?;
        let mut items = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            if inner.is_empty() {
                items.push(match r.value()? {
                    Some(bytes) => decode(element, bytes)?,
                    None => Value::Null,
                });
            } else {
                items.push(level(r, element, inner)?);
            }
        }
        Ok(Value::Array(items))
    }
    level(&mut r, element, &dims)
}

/// A row value (composite type) as an object of its fields.
fn decode_composite(fields: &[(String, PgTypeInfo)], bytes: &[u8]) -> Result<Value, String> {
    let mut r = Reader { buf: bytes };
    let count = usize::try_from(r.i32()?).map_err(|_| "a malformed composite value")?;
    let mut object = serde_json::Map::new();
    for i in 0..count {
        let _oid = r.u32()?;
        let (name, ty) = fields
            .get(i)
            .ok_or("the composite value has more fields than its type")?;
        let value = match r.value()? {
            Some(bytes) => decode(ty, bytes).map_err(|e| format!("field `{name}`: {e}"))?,
            None => Value::Null,
        };
        object.insert(name.clone(), value);
    }
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_round_trip(text: &str) -> String {
        let bytes = encode_numeric(text).unwrap();
        decode_numeric(&mut Reader { buf: &bytes }).unwrap()
    }

    #[test]
    fn numerics_keep_their_digits_and_scale() {
        for (given, read) in [
            ("0", "0"),
            ("12.50", "12.50"),
            ("-12.50", "-12.50"),
            (
                "123456789012345678901234567890.000000001",
                "123456789012345678901234567890.000000001",
            ),
            ("0.0001", "0.0001"),
            ("0.00001234", "0.00001234"),
            ("10000", "10000"),
            ("1e3", "1000"),
            ("1.5e-3", "0.0015"),
            ("+7", "7"),
            ("0.000", "0.000"),
            ("NaN", "NaN"),
            ("Infinity", "Infinity"),
        ] {
            assert_eq!(numeric_round_trip(given), read, "{given}");
        }
        for bad in ["", ".", "1.2.3", "abc", "1e", "--1", "1e99999"] {
            assert!(encode_numeric(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn intervals_and_offsets_read_as_iso_8601() {
        assert_eq!(
            interval_text(14, 3, 4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000),
            "P1Y2M3DT4H5M6.5S"
        );
        assert_eq!(interval_text(0, 0, 0), "PT0S");
        assert_eq!(interval_text(0, -1, -5_400_000_000), "P-1DT-1H-30M");
        assert_eq!(offset_text(3600 * 5 + 1800), "+05:30");
        assert_eq!(offset_text(-3600), "-01:00");
        assert_eq!(time_text(DAY_MICROS).unwrap(), "24:00:00");
        assert_eq!(time_text(3_723_000_001).unwrap(), "01:02:03.000001");
    }
}
