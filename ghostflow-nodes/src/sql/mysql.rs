//! MySQL and MariaDB: JSON parameters bound by their JSON type (the server
//! converts them to the column's type), and values decoded by the column
//! type the server reports.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::mysql::types::MySqlTime;
use sqlx::mysql::{MySqlArguments, MySqlRow, MySqlValueRef};
use sqlx::{Arguments, Column, Decode, MySql, Row, TypeInfo, ValueRef};

use super::values::{base64_text, float_json};

/// The arguments for `params`, in order.
pub(crate) fn arguments(params: &[Value]) -> Result<MySqlArguments, String> {
    let mut args = MySqlArguments::default();
    for (i, value) in params.iter().enumerate() {
        let added = match value {
            Value::Null => args.add(Option::<String>::None),
            Value::Bool(b) => args.add(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => args.add(i),
                (None, Some(u), _) => args.add(u),
                (None, None, Some(f)) => args.add(f),
                _ => args.add(n.to_string()),
            },
            Value::String(s) => args.add(s.clone()),
            // Arrays and objects as JSON text, which JSON columns take.
            other => args.add(other.to_string()),
        };
        added.map_err(|e| format!("params[{i}]: {e}"))?;
    }
    Ok(args)
}

fn decode<'r, T: Decode<'r, MySql>>(raw: MySqlValueRef<'r>) -> Result<T, String> {
    T::decode(raw).map_err(|e| e.to_string())
}

/// The JSON of column `index` of `row`. The server gives text with a
/// binary collation (`utf8mb4_bin`, MariaDB's JSON and UUID types) the same
/// binary flag as binary data, and the driver does not pass on the
/// character set: such columns read as base64 unless `text` asks for text.
pub(crate) fn value(row: &MySqlRow, index: usize, text: bool) -> Result<Value, String> {
    let raw = row.try_get_raw(index).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let ty = row.column(index).type_info().name().to_owned();
    Ok(match ty.as_str() {
        // TINYINT(1), which is what BOOLEAN means here: any other number
        // than 0 is true.
        "BOOLEAN" => Value::Bool(decode::<i64>(raw)? != 0),
        "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" | "YEAR" => {
            Value::from(decode::<i64>(raw)?)
        }
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED"
        | "BIGINT UNSIGNED" | "BIT" => Value::from(decode::<u64>(raw)?),
        "FLOAT" => {
            let f = decode::<f32>(raw)?;
            float_json(f.to_string().parse().unwrap_or(f64::from(f)))
        }
        "DOUBLE" => float_json(decode::<f64>(raw)?),
        // Exact decimals as the server writes them.
        "DECIMAL" => Value::String(decode::<&str>(raw)?.to_owned()),
        "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            Value::String(decode::<String>(raw)?)
        }
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            let bytes = decode::<&[u8]>(raw)?;
            if text {
                Value::String(
                    std::str::from_utf8(bytes)
                        .map_err(|_| "the value is not UTF-8 text".to_owned())?
                        .to_owned(),
                )
            } else {
                Value::String(base64_text(bytes))
            }
        }
        "JSON" => {
            serde_json::from_str(decode::<&str>(raw)?).map_err(|e| format!("invalid JSON: {e}"))?
        }
        "DATE" => Value::String(match decode::<NaiveDate>(raw) {
            Ok(date) => date.format("%Y-%m-%d").to_string(),
            Err(_) if zero_date(row, index) => "0000-00-00".to_owned(),
            Err(e) => return Err(e),
        }),
        "DATETIME" => Value::String(match decode::<NaiveDateTime>(raw) {
            Ok(at) => at.format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
            Err(_) if zero_date(row, index) => "0000-00-00T00:00:00".to_owned(),
            Err(e) => return Err(e),
        }),
        // Stored in UTC, and read in UTC: the driver sets the session's
        // time zone to +00:00.
        "TIMESTAMP" => Value::String(match decode::<DateTime<Utc>>(raw) {
            Ok(at) => at.to_rfc3339_opts(SecondsFormat::AutoSi, false),
            Err(_) if zero_date(row, index) => "0000-00-00T00:00:00".to_owned(),
            Err(e) => return Err(e),
        }),
        "TIME" => Value::String(time_text(&decode::<MySqlTime>(raw)?)),
        "NULL" => Value::Null,
        other => {
            return Err(format!(
                "the type `{other}` has no JSON form here; convert the column in the SQL (for example `CAST(column AS CHAR)` or `ST_AsText(column)`)"
            ));
        }
    })
}

/// Whether the value is MySQL's "zero" date (`0000-00-00`), which has no
/// calendar date.
fn zero_date(row: &MySqlRow, index: usize) -> bool {
    row.try_get_raw(index)
        .ok()
        .and_then(|raw| <&[u8] as Decode<MySql>>::decode(raw).ok())
        .is_some_and(|bytes| bytes.iter().all(|b| *b == 0) || bytes.starts_with(b"0000-00-00"))
}

/// `HH:MM:SS[.ffffff]`, with a sign and more than 24 hours when the value
/// is a duration (`-838:59:59`).
fn time_text(time: &MySqlTime) -> String {
    // (`MySqlTime::is_negative` of sqlx 0.8.6 answers the opposite; the
    // sign itself is right.)
    let sign = if time.sign().is_negative() { "-" } else { "" };
    let mut out = format!(
        "{sign}{:02}:{:02}:{:02}",
        time.hours(),
        time.minutes(),
        time.seconds()
    );
    // Fractional seconds as the other databases' times: three digits when
    // they are whole milliseconds, six otherwise.
    match time.microseconds() {
        0 => {}
        us if us % 1000 == 0 => out.push_str(&format!(".{:03}", us / 1000)),
        us => out.push_str(&format!(".{us:06}")),
    }
    out
}
