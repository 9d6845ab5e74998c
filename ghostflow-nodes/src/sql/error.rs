//! What can go wrong in the SQL nodes, and whether retrying can help.

use std::borrow::Cow;

use ghostflow::NodeError;
use sqlx::error::DatabaseError;

use super::config::Target;

/// A failure of an SQL node, before it is masked and handed to the engine.
#[derive(Debug)]
pub(crate) struct Failure {
    retryable: bool,
    message: String,
}

impl Failure {
    /// A failure that another attempt cannot fix.
    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        Failure {
            retryable: false,
            message: message.into(),
        }
    }

    /// A failure that may pass.
    pub(crate) fn retryable(message: impl Into<String>) -> Self {
        Failure {
            retryable: true,
            message: message.into(),
        }
    }

    /// A driver or database error met while running the SQL at `place`
    /// (`config.query`, `config.statements[1]`, `batch item 3`).
    pub(crate) fn sql(error: &sqlx::Error, place: &str) -> Self {
        let (retryable, what) = describe(error);
        Failure {
            retryable,
            message: format!("{place}: {what}"),
        }
    }

    /// A driver error met while connecting to `target`.
    pub(crate) fn connect(error: &sqlx::Error, target: &Target) -> Self {
        let (retryable, what) = describe(error);
        Failure {
            retryable,
            message: format!("cannot connect to {}: {what}", target.shown),
        }
    }

    /// The same failure with `(suffix)` after its message.
    pub(crate) fn suffix(mut self, suffix: &str) -> Self {
        self.message = format!("{} ({suffix})", self.message);
        self
    }

    /// The error the engine sees, with the password of `target` masked.
    pub(crate) fn into_node_error(self, target: &Target) -> NodeError {
        let message = target.mask(&self.message);
        if self.retryable {
            NodeError::retryable(message)
        } else {
            NodeError::permanent(message)
        }
    }
}

/// Whether `error` may pass on another attempt, and what it says: the
/// database's message with its SQLSTATE code (and for PostgreSQL, its
/// detail, hint and position).
fn describe(error: &sqlx::Error) -> (bool, String) {
    match error {
        sqlx::Error::Database(db) => (database_retryable(db.as_ref()), database_message(db.as_ref())),
        sqlx::Error::Io(e) => (true, e.to_string()),
        sqlx::Error::PoolTimedOut => (
            true,
            "no connection became free in time (config.connect_timeout); the pool is busy or the database is slow to answer"
                .to_owned(),
        ),
        sqlx::Error::PoolClosed => (true, "the connection pool was closed".to_owned()),
        sqlx::Error::WorkerCrashed => (true, "the SQLite worker thread stopped".to_owned()),
        sqlx::Error::Protocol(text) => (true, format!("protocol error: {text}")),
        sqlx::Error::Tls(e) => (false, format!("TLS: {e}")),
        sqlx::Error::Configuration(e) => (false, format!("invalid connection settings: {e}")),
        other => (false, other.to_string()),
    }
}

/// The database's own words.
fn database_message(db: &dyn DatabaseError) -> String {
    let mut text = db.message().to_owned();
    let code: Option<Cow<'_, str>> = db.code();
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        text = pg.message().to_owned();
        if let Some(detail) = pg.detail() {
            text.push_str(": ");
            text.push_str(detail);
        }
        if let Some(hint) = pg.hint() {
            text.push_str(" (hint: ");
            text.push_str(hint);
            text.push(')');
        }
        text.push_str(&format!(" (SQLSTATE {}", pg.code()));
        if let Some(sqlx::postgres::PgErrorPosition::Original(at)) = pg.position() {
            text.push_str(&format!(", at character {at}"));
        }
        text.push(')');
        return text;
    }
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return match my.code() {
            Some(state) => format!("{} (SQLSTATE {state}, error {})", my.message(), my.number()),
            None => format!("{} (error {})", my.message(), my.number()),
        };
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        if let Some(code) = code {
            text.push_str(&format!(" (SQLite error {code})"));
        }
        return text;
    }
    if let Some(code) = code {
        text.push_str(&format!(" (code {code})"));
    }
    text
}

/// Failures of the moment: lost connections, deadlocks, serialization
/// failures, lock and statement timeouts, a busy or shutting-down server.
fn database_retryable(db: &dyn DatabaseError) -> bool {
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // 1040 too many connections, 1053 shutdown, 1205 lock wait timeout,
        // 1213 deadlock, 1927 connection killed, 1969 max_statement_time
        // (MariaDB), 3024 max_execution_time (MySQL), 2006/2013 gone away.
        return matches!(
            my.number(),
            1040 | 1053 | 1205 | 1213 | 1927 | 1969 | 3024 | 2006 | 2013
        ) || my
            .code()
            .is_some_and(|state| state.starts_with("08") || state.starts_with("40"));
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // The primary code is the low byte: 5 busy, 6 locked, 9 interrupted
        // (the statement timeout), 10 I/O error.
        let primary = db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .map(|c| c & 0xff);
        return matches!(primary, Some(5 | 6 | 9 | 10));
    }
    let Some(code) = db.code() else {
        return false;
    };
    // PostgreSQL: 08 connection exception, 40 transaction rollback
    // (serialization failure, deadlock), 53 insufficient resources, 55P03
    // lock not available, 57014 query canceled (statement timeout), 57P0x
    // shutdown and startup, 58 system error.
    code.starts_with("08")
        || code.starts_with("40")
        || code.starts_with("53")
        || code.starts_with("57")
        || code.starts_with("58")
        || code == "55P03"
}
