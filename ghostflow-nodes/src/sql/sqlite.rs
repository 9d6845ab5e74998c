//! SQLite: JSON parameters bound as SQLite's own storage classes, and values
//! read by the storage class each one has.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::Value;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{Arguments, Column, Decode, Row, Sqlite, TypeInfo, ValueRef};

use super::values::{base64_text, float_json};

/// The arguments for `params`, in order.
pub(crate) fn arguments<'q>(params: &[Value]) -> Result<SqliteArguments<'q>, String> {
    let mut args = SqliteArguments::default();
    for (i, value) in params.iter().enumerate() {
        let added = match value {
            Value::Null => args.add(Option::<i64>::None),
            Value::Bool(b) => args.add(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => args.add(i),
                (None, Some(u), _) => {
                    return Err(format!(
                        "params[{i}]: {u} is larger than SQLite's largest integer (9223372036854775807); pass it as a string"
                    ));
                }
                (None, None, Some(f)) => args.add(f),
                _ => args.add(n.to_string()),
            },
            Value::String(s) => args.add(s.clone()),
            // Arrays and objects as JSON text, which SQLite's JSON functions read.
            other => args.add(other.to_string()),
        };
        added.map_err(|e| format!("params[{i}]: {e}"))?;
    }
    Ok(args)
}

fn decode<'r, T: Decode<'r, Sqlite>>(raw: sqlx::sqlite::SqliteValueRef<'r>) -> Result<T, String> {
    T::decode(raw).map_err(|e| e.to_string())
}

/// The JSON of column `index` of `row`: by the value's storage class, and
/// integers in a column declared `BOOLEAN` as booleans.
pub(crate) fn value(row: &SqliteRow, index: usize) -> Result<Value, String> {
    let raw = row.try_get_raw(index).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let boolean = row.column(index).type_info().name() == "BOOLEAN";
    let class = raw.type_info().name().to_owned();
    Ok(match class.as_str() {
        "INTEGER" if boolean => Value::Bool(decode::<i64>(raw)? != 0),
        "INTEGER" => Value::from(decode::<i64>(raw)?),
        "REAL" => float_json(decode::<f64>(raw)?),
        "BLOB" => Value::String(base64_text(decode::<&[u8]>(raw)?)),
        _ => Value::String(decode::<String>(raw)?),
    })
}

/// When the statement of a connection must stop, in milliseconds since
/// [`origin`]; `u64::MAX` for never.
#[derive(Debug)]
pub(crate) struct Deadline(Arc<AtomicU64>);

fn origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(origin().elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Drop for Deadline {
    /// Disarms the handler, so that a statement run later on the same
    /// connection (such as the rollback of a dropped transaction) is
    /// never interrupted by a deadline that has passed.
    fn drop(&mut self) {
        self.0.store(u64::MAX, Ordering::Release);
    }
}

/// Interrupts what `conn` runs once `after` has passed (SQLite has no
/// statement timeout of its own), until the returned guard drops.
pub(crate) async fn arm(
    conn: &mut SqliteConnection,
    after: std::time::Duration,
) -> Result<Deadline, sqlx::Error> {
    let at = now_ms().saturating_add(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
    let cell = Arc::new(AtomicU64::new(at));
    let seen = cell.clone();
    let mut handle = conn.lock_handle().await?;
    // Called every few thousand virtual-machine steps; `false` interrupts.
    handle.set_progress_handler(4096, move || now_ms() < seen.load(Ordering::Acquire));
    Ok(Deadline(cell))
}

/// Whether `sql` inserts rows (so that SQLite's last insert rowid is this
/// statement's): its first word, after comments, is INSERT or REPLACE.
pub(crate) fn inserts(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(word.as_str(), "INSERT" | "REPLACE")
}

#[cfg(test)]
mod tests {
    #[test]
    fn inserts_are_told_by_their_first_word() {
        assert!(super::inserts("insert into t values (1)"));
        assert!(super::inserts(
            "  -- note\n /* x */ REPLACE INTO t VALUES (1)"
        ));
        assert!(!super::inserts("UPDATE t SET a = 1"));
        assert!(!super::inserts("-- INSERT\nDELETE FROM t"));
    }
}
