//! SQL nodes: queries and statements on SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! - [`SqlQuery`] runs a query and outputs its rows as JSON objects (column
//!   order kept) and its column names, bounded by `max_rows`.
//! - [`SqlQueryOne`] runs a query that returns at most one row (a lookup by
//!   key, a `count(*)`) and outputs that row.
//! - [`SqlExecute`] runs statements that change data and outputs the rows
//!   affected and the last insert id; a list of statements, or one
//!   statement over a `batch` of parameter lists, runs in one transaction.
//!
//! # Connections
//!
//! The connection URL is `url` in the config or, since URLs hold passwords,
//! a secret named by `url_secret`: `postgres://user:pw@host:5432/db`,
//! `mysql://user:pw@host:3306/db` (or `mariadb://`), `sqlite://path.db`
//! (add `?mode=rwc` to create the file), `sqlite::memory:`. A relative
//! SQLite path is read from the process's working directory. The password
//! never appears in an error: it is masked (raw and percent-decoded)
//! wherever the driver or the database echoes it.
//!
//! Each engine keeps one lazily made pool per URL and pool settings
//! (`max_connections`, default 10; `connect_timeout`, default 10 s, the
//! longest wait for a connection), shared by every node and execution; at
//! most 32 pools, the least recently used dropped first. An in-memory
//! SQLite database lives as long as the engine (its pool keeps one
//! connection open), and is shared by the nodes that name the same URL.
//!
//! # Parameters are bound, never spliced
//!
//! SQL text uses the database's own placeholders: `$1`, `$2`... for
//! PostgreSQL and SQLite (which also takes `?`), `?` for MySQL and MariaDB.
//! The values come from the config's `params` (where documents may use
//! expressions: `params: ["{{ input.name }}"]` binds the value, whatever it
//! holds) or from the `params` input, not both. The SQL itself is never an
//! expression: a query containing `{{` is refused when the flow loads (a
//! PostgreSQL array literal such as `'{{1,2},{3,4}}'` is refused too: bind
//! it as a parameter). A statement is prepared first, and a placeholder
//! count that differs from the number of values is an error before
//! anything runs. Named parameters are not supported.
//!
//! JSON values bind as: null as NULL; booleans, integers (up to `u64` for
//! MySQL; SQLite integers are `i64`) and floats as themselves; strings as
//! text; arrays and objects as JSON text. PostgreSQL says which type each
//! placeholder has, and the value is encoded as that type: strings become
//! dates (`YYYY-MM-DD`), times, timestamps (RFC 3339; for `timestamp`
//! without time zone an offset is ignored, as PostgreSQL does; for
//! `timestamptz` a time without offset is UTC), UUIDs, `numeric` (strings or
//! numbers, digits kept), `bytea` (from base64); JSON values become `json`
//! and `jsonb`; arrays become PostgreSQL arrays of the element type. A type
//! with no JSON form (`interval`, ranges, geometric types...) is bound from
//! text with a cast: `$1::text::interval`. MySQL and SQLite convert text to
//! the column's type themselves; binary data is given as base64 and decoded
//! in the SQL (`FROM_BASE64(?)` in MySQL and MariaDB).
//!
//! # Values read back
//!
//! | database value | JSON |
//! |---|---|
//! | NULL | `null` |
//! | integers | numbers |
//! | floats | numbers; NaN and infinities as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | booleans, MySQL `BOOLEAN`/`TINYINT(1)`, SQLite columns declared `BOOLEAN` | booleans |
//! | `NUMERIC`, `DECIMAL` | strings, every digit and the scale kept (`"12.50"`) |
//! | text, enums, UUIDs | strings |
//! | `json`, `jsonb`, MySQL `JSON` | nested values |
//! | `date` | `"2024-05-01"` |
//! | `time` | `"13:45:00"`, fractional seconds when present; MySQL `TIME` may be negative or past 24 h |
//! | `timestamptz`, MySQL `TIMESTAMP` | RFC 3339 in UTC, `"2024-05-01T13:45:00+00:00"` |
//! | `timestamp`, MySQL `DATETIME` (no time zone) | `"2024-05-01T13:45:00"`: no offset, because the database does not know it |
//! | `interval` | ISO 8601 duration, `"P1DT2H"` |
//! | binary (`bytea`, `BLOB`, `VARBINARY`) | base64 strings |
//! | PostgreSQL arrays | JSON arrays (nested for several dimensions) |
//! | PostgreSQL composite values | objects |
//! | `inet`, `cidr`, `macaddr`, `bit` | their usual text |
//!
//! MariaDB and SQLite store JSON as text: name such columns in
//! `json_columns` to read them as nested values. MySQL and MariaDB report
//! text with a binary collation (`utf8mb4_bin`, and MariaDB's `JSON` and
//! `UUID` types) with the same binary flag as binary data, and the driver
//! does not pass on the character set that tells them apart: such columns
//! read as base64, unless named in `json_columns` or cast in the SQL
//! (`CAST(u AS CHAR)`). A SQLite value is read by
//! the storage class it has (dates are whatever text or number was
//! stored). A column of a type with no JSON form fails the node with its
//! name and type; cast it to text in the SQL.
//!
//! # Limits, errors, transactions
//!
//! - `max_rows` (default 1000) bounds what a query reads: one row more
//!   fails the node (`over_max_rows: fail`) or stops the reading
//!   (`truncate`, with `truncated: true`). The rest of the result is
//!   discarded by the driver; a `LIMIT` spares the database the work.
//! - `statement_timeout` (default 30 s, `0` for none) is set on the
//!   server (PostgreSQL `statement_timeout`, MariaDB `max_statement_time`,
//!   MySQL `max_execution_time`, which covers `SELECT` only) and enforced
//!   for SQLite by interrupting the statement; the node also stops waiting
//!   two seconds after it.
//! - Failures that may pass are retryable: the database unreachable, lost
//!   connections, deadlocks and serialization failures, lock and statement
//!   timeouts, a busy SQLite database. Others are permanent: bad SQL,
//!   constraint violations, type errors, bad parameters. Messages carry the
//!   database's words and its code (`(SQLSTATE 23505)`; for SQLite its
//!   extended result code).
//! - Every node has an optional `after` input that takes any value and
//!   only orders it: connect `create.rows_affected` to `insert.after` to
//!   insert into a table once it exists.
//! - A transaction that fails is rolled back before the node fails, so a
//!   retry starts over. If the execution is cancelled or times out in the
//!   middle, the transaction is dropped, and the driver rolls it back before
//!   the connection is used again: nothing of it is committed.

mod config;
mod error;
mod mysql;
mod pg;
mod pool;
mod run;
mod sqlite;
mod values;

use std::num::NonZeroU32;

use ghostflow::Registry;
use ghostflow::document::DurationText;
use ghostflow::prelude::*;
use serde_json::Value;
use sqlx::{Executor, IntoArguments, Pool};

pub use self::config::OverMaxRows;
use self::config::{
    PoolSettings, Target, connection_url, default_connect_timeout, default_max_connections,
    default_max_rows, default_statement_timeout, sql_text,
};
use self::error::Failure;
use self::pool::{AnyPool, SqlPools, acquire};
use self::run::{Dialect, Done, RowRules, Rows, Sql};

/// Registers the sql nodes.
pub(crate) fn register(registry: &mut Registry) {
    registry
        .register::<SqlQuery>()
        .register::<SqlQueryOne>()
        .register::<SqlExecute>();
}

/// Runs `$body` with `$p` bound to the pool of whichever database `$pool` is.
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            AnyPool::Postgres($p) => $body,
            AnyPool::MySql($p) => $body,
            AnyPool::Sqlite($p) => $body,
        }
    };
}

fn default_max_connections_nz() -> NonZeroU32 {
    NonZeroU32::new(default_max_connections()).unwrap_or(NonZeroU32::MIN)
}

/// The parameters of one execution: the config's or the input's.
fn chosen_params(config: &[Value], input: Option<Vec<Value>>) -> Result<Vec<Value>, NodeError> {
    match input {
        Some(_) if !config.is_empty() => Err(NodeError::permanent(
            "input `params`: the config has `params` too; give the parameters in one place",
        )),
        Some(given) => Ok(given),
        None => Ok(config.to_vec()),
    }
}

/// The connection and pool settings every SQL node has.
struct Connect<'a> {
    url: Option<&'a str>,
    url_secret: Option<&'a str>,
    settings: PoolSettings,
}

impl Connect<'_> {
    fn open(&self, ctx: &Context) -> Result<(Target, AnyPool), NodeError> {
        let target = Target::resolve(self.url, self.url_secret, ctx)?;
        let pool =
            SqlPools::get(ctx, &target, self.settings).map_err(|f| f.into_node_error(&target))?;
        Ok((target, pool))
    }
}

/// Reads rows on a connection of `pool`.
async fn query_on<DB>(
    pool: &Pool<DB>,
    target: &Target,
    settings: PoolSettings,
    sql: &Sql<'_>,
    rules: &RowRules<'_>,
) -> Result<Rows, Failure>
where
    DB: Dialect,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'a> DB::Arguments<'a>: IntoArguments<'a, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let mut conn = acquire(pool, target, settings.connect_timeout).await?;
    run::fetch::<DB>(&mut conn, sql, rules, settings.statement_timeout).await
}

/// Runs statements on a connection of `pool`, in one transaction when
/// `transaction` (or when there are several).
async fn execute_on<DB>(
    pool: &Pool<DB>,
    target: &Target,
    settings: PoolSettings,
    work: &[Sql<'_>],
    transaction: bool,
) -> Result<Vec<Done>, Failure>
where
    DB: Dialect,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'a> DB::Arguments<'a>: IntoArguments<'a, DB>,
{
    let timeout = settings.statement_timeout;
    let mut conn = acquire(pool, target, settings.connect_timeout).await?;
    if !transaction {
        let mut done = Vec::with_capacity(work.len());
        for sql in work {
            done.push(run::execute::<DB>(&mut conn, sql, timeout).await?);
        }
        return Ok(done);
    }
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .map_err(|e| Failure::sql(&e, "starting the transaction"))?;
    let mut done = Vec::with_capacity(work.len());
    for sql in work {
        match run::execute::<DB>(&mut tx, sql, timeout).await {
            Ok(d) => done.push(d),
            Err(failure) => {
                let rolled_back = match tx.rollback().await {
                    Ok(()) => "the transaction was rolled back: nothing was written".to_owned(),
                    Err(e) => format!(
                        "rolling back the transaction failed too ({e}); the database rolls it back as the connection closes"
                    ),
                };
                return Err(failure.suffix(&rolled_back));
            }
        }
    }
    tx.commit()
        .await
        .map_err(|e| Failure::sql(&e, "committing the transaction"))?;
    Ok(done)
}

// ------------------------------------------------------------------ sql_query

/// Runs an SQL query and outputs its rows as JSON objects, with the column
/// names.
///
/// The query uses the database's placeholders (`$1` for PostgreSQL and
/// SQLite, `?` for MySQL/MariaDB), bound to `params` (from the config, where
/// expressions are allowed, or from the `params` input). Values keep their
/// types: numbers, booleans, strings, nested JSON; exact decimals as strings,
/// dates and times as ISO 8601 text, binary as base64 (see the family's
/// guide). At most `max_rows` rows are read: one more fails the node, or
/// with `over_max_rows: truncate` the rows stop there and `truncated` is
/// true. Any statement that returns rows will do, such as an `INSERT ...
/// RETURNING id`.
///
/// ```yaml
/// - id: recent_orders
///   type: sql_query
///   config:
///     url_secret: SHOP_DATABASE_URL
///     query: |
///       SELECT id, customer, total, created_at
///       FROM orders WHERE customer = $1 AND created_at >= $2
///       ORDER BY created_at DESC
///     params: ["{{ input.customer }}", "2024-01-01"]
///     max_rows: 500
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = SqlParams, output = SqlRows, category = "sql")]
#[serde(deny_unknown_fields)]
pub struct SqlQuery {
    /// The connection URL (`postgres://`, `mysql://`, `mariadb://`,
    /// `sqlite:`); prefer `url_secret` when it holds a password.
    #[serde(
        default,
        deserialize_with = "connection_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<String>,
    /// The name of the secret holding the connection URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret: Option<String>,
    /// The query, with placeholders for its parameters. Not an expression:
    /// `{{` is refused.
    #[serde(deserialize_with = "sql_text")]
    #[schemars(extend("x-template" = true))]
    pub query: String,
    /// The parameters, in placeholder order (expressions allowed); the
    /// `params` input gives them instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Value>,
    /// The most rows read.
    #[serde(default = "default_max_rows")]
    pub max_rows: u64,
    /// What more rows than `max_rows` do: `fail` or `truncate`.
    #[serde(default)]
    pub over_max_rows: OverMaxRows,
    /// Columns whose text is JSON, read as nested values (for MariaDB and
    /// SQLite, which report JSON as text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_columns: Vec<String>,
    /// The longest a statement may run, such as `30s`; `0` for no limit.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout: DurationText,
    /// The longest wait for a connection, such as `10s`.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: DurationText,
    /// The most connections the engine opens to this database (one pool
    /// per URL and settings).
    #[serde(default = "default_max_connections_nz")]
    pub max_connections: NonZeroU32,
}

/// Parameters given at run time.
#[derive(Ports, Debug)]
pub struct SqlParams {
    /// The parameters, in placeholder order, instead of the config's
    /// `params`.
    pub params: Option<Vec<Value>>,
    /// Any value: connect an output here to run this node after that
    /// node (the value itself is not used).
    pub after: Option<Value>,
}

/// The rows of an [`SqlQuery`].
#[derive(Ports, Debug)]
pub struct SqlRows {
    /// One object per row, its keys in column order.
    pub rows: Vec<Value>,
    /// The column names, in order (also when there are no rows).
    pub columns: Vec<String>,
    /// Whether rows were left out (`over_max_rows: truncate`).
    pub truncated: bool,
}

impl SqlQuery {
    /// A query on the database at `url` (a `url_secret` is better for URLs
    /// with passwords: set it and clear `url`).
    ///
    /// # Errors
    /// The URL's scheme is not a supported database, or the query is not
    /// acceptable SQL text (empty, or containing `{{`).
    pub fn new(url: impl Into<String>, query: impl Into<String>) -> Result<Self, String> {
        let (url, query) = (url.into(), query.into());
        config::Backend::of(&url)?;
        config::check_sql(&query)?;
        Ok(SqlQuery {
            url: Some(url),
            url_secret: None,
            query,
            params: Vec::new(),
            max_rows: default_max_rows(),
            over_max_rows: OverMaxRows::Fail,
            json_columns: Vec::new(),
            statement_timeout: default_statement_timeout(),
            connect_timeout: default_connect_timeout(),
            max_connections: default_max_connections_nz(),
        })
    }

    /// The same query with these parameters.
    #[must_use]
    pub fn params(mut self, params: impl IntoIterator<Item = Value>) -> Self {
        self.params = params.into_iter().collect();
        self
    }

    fn connect(&self) -> Connect<'_> {
        Connect {
            url: self.url.as_deref(),
            url_secret: self.url_secret.as_deref(),
            settings: settings(
                self.max_connections,
                self.connect_timeout,
                self.statement_timeout,
            ),
        }
    }
}

fn settings(
    max_connections: NonZeroU32,
    connect_timeout: DurationText,
    statement_timeout: DurationText,
) -> PoolSettings {
    PoolSettings {
        max_connections: max_connections.get(),
        connect_timeout: connect_timeout.0,
        statement_timeout: statement_timeout.0,
    }
}

impl Run for SqlQuery {
    async fn run(&self, input: SqlParams, ctx: &Context) -> Result<SqlRows, NodeError> {
        let params = chosen_params(&self.params, input.params)?;
        let connect = self.connect();
        let (target, pool) = connect.open(ctx)?;
        let sql = Sql {
            sql: &self.query,
            params: &params,
            place: "config.query".to_owned(),
        };
        let rules = RowRules {
            max_rows: self.max_rows,
            truncate: self.over_max_rows == OverMaxRows::Truncate,
            json_columns: &self.json_columns,
        };
        let rows =
            with_pool!(&pool, p => query_on(p, &target, connect.settings, &sql, &rules).await)
                .map_err(|f| f.into_node_error(&target))?;
        Ok(SqlRows {
            rows: rows.rows,
            columns: rows.columns,
            truncated: rows.truncated,
        })
    }
}

// -------------------------------------------------------------- sql_query_one

/// Runs an SQL query that returns at most one row, and outputs that row as
/// a JSON object (`null` when there is none).
///
/// For lookups by key and aggregates. More than one row fails the node
/// (add a `LIMIT 1` if any row will do); no row gives `row: null` and
/// `found: false`, or fails the node when `required` is true. Parameters,
/// connections and values work as for `sql_query`.
///
/// ```yaml
/// - id: customer
///   type: sql_query_one
///   config:
///     url_secret: SHOP_DATABASE_URL
///     query: SELECT id, name, email FROM customers WHERE id = $1
///     params: ["{{ input.customer_id }}"]
///     required: true
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = SqlParams, output = SqlRow, category = "sql")]
#[serde(deny_unknown_fields)]
pub struct SqlQueryOne {
    /// The connection URL (`postgres://`, `mysql://`, `mariadb://`,
    /// `sqlite:`); prefer `url_secret` when it holds a password.
    #[serde(
        default,
        deserialize_with = "connection_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<String>,
    /// The name of the secret holding the connection URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret: Option<String>,
    /// The query, with placeholders for its parameters. Not an expression:
    /// `{{` is refused.
    #[serde(deserialize_with = "sql_text")]
    #[schemars(extend("x-template" = true))]
    pub query: String,
    /// The parameters, in placeholder order (expressions allowed); the
    /// `params` input gives them instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Value>,
    /// Whether no row fails the node (otherwise `row` is null).
    #[serde(default)]
    pub required: bool,
    /// Columns whose text is JSON, read as nested values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_columns: Vec<String>,
    /// The longest a statement may run, such as `30s`; `0` for no limit.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout: DurationText,
    /// The longest wait for a connection, such as `10s`.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: DurationText,
    /// The most connections the engine opens to this database.
    #[serde(default = "default_max_connections_nz")]
    pub max_connections: NonZeroU32,
}

/// The row of an [`SqlQueryOne`].
#[derive(Ports, Debug)]
pub struct SqlRow {
    /// The row as an object, keys in column order; `null` when there is
    /// no row.
    pub row: Value,
    /// Whether there was a row.
    pub found: bool,
}

impl Run for SqlQueryOne {
    async fn run(&self, input: SqlParams, ctx: &Context) -> Result<SqlRow, NodeError> {
        let params = chosen_params(&self.params, input.params)?;
        let connect = Connect {
            url: self.url.as_deref(),
            url_secret: self.url_secret.as_deref(),
            settings: settings(
                self.max_connections,
                self.connect_timeout,
                self.statement_timeout,
            ),
        };
        let (target, pool) = connect.open(ctx)?;
        let sql = Sql {
            sql: &self.query,
            params: &params,
            place: "config.query".to_owned(),
        };
        let rules = RowRules {
            max_rows: 1,
            truncate: true,
            json_columns: &self.json_columns,
        };
        let mut rows =
            with_pool!(&pool, p => query_on(p, &target, connect.settings, &sql, &rules).await)
                .map_err(|f| f.into_node_error(&target))?;
        if rows.truncated {
            return Err(NodeError::permanent(
                "config.query: the query returned more than one row; add a LIMIT 1 or use sql_query",
            ));
        }
        match rows.rows.pop() {
            Some(row) => Ok(SqlRow { row, found: true }),
            None if self.required => Err(NodeError::permanent(
                "config.query: the query returned no row (config.required)",
            )),
            None => Ok(SqlRow {
                row: Value::Null,
                found: false,
            }),
        }
    }
}

// ---------------------------------------------------------------- sql_execute

/// The SQL of an [`SqlExecute`]: one statement, or several run in order in
/// one transaction.
#[derive(Clone, Debug, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum Statements {
    /// One statement.
    One(String),
    /// Statements run in one transaction: all or nothing.
    Many(Vec<String>),
}

impl From<&str> for Statements {
    fn from(sql: &str) -> Self {
        Statements::One(sql.to_owned())
    }
}

/// Accepts a statement or a non-empty list of them, each checked as SQL
/// text.
fn statements<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Statements, D::Error> {
    use serde::de::Error as _;
    match Value::deserialize(deserializer)? {
        Value::String(sql) => {
            config::check_sql(&sql).map_err(D::Error::custom)?;
            Ok(Statements::One(sql))
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Err(D::Error::custom("the list of statements is empty"));
            }
            let mut list = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let Value::String(sql) = item else {
                    return Err(D::Error::custom(format!(
                        "[{i}]: expected a statement (a string), got {}",
                        crate::kind(&item)
                    )));
                };
                config::check_sql(&sql).map_err(|e| D::Error::custom(format!("[{i}]: {e}")))?;
                list.push(sql);
            }
            Ok(Statements::Many(list))
        }
        other => Err(D::Error::custom(format!(
            "expected a statement or a list of statements, got {}",
            crate::kind(&other)
        ))),
    }
}

/// Runs SQL statements that change data (INSERT, UPDATE, DELETE, DDL) and
/// outputs the number of rows affected and the last insert id.
///
/// `query` is one statement, or a list of statements run in order in one
/// transaction: all of them or none. Parameters use the database's
/// placeholders and come from `params` (config or input): a list for one
/// statement; for a list of statements, one list per statement. The
/// `batch` input runs one statement once per element, all in one
/// transaction: each element is a list of parameters, or an object whose
/// `batch_fields` are taken in order. A failure rolls the transaction back
/// before the node fails. `last_insert_id` is MySQL's auto-increment id or
/// SQLite's rowid of an INSERT (PostgreSQL has none: use
/// `INSERT ... RETURNING id` with `sql_query`).
///
/// ```yaml
/// - id: transfer
///   type: sql_execute
///   config:
///     url_secret: BANK_DATABASE_URL
///     query:
///       - UPDATE accounts SET balance = balance - $1 WHERE id = $2
///       - UPDATE accounts SET balance = balance + $1 WHERE id = $2
///     params:
///       - ["{{ input.amount }}", "{{ input.from }}"]
///       - ["{{ input.amount }}", "{{ input.to }}"]
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = SqlExecuteInput, output = SqlExecuted, category = "sql")]
#[serde(deny_unknown_fields)]
pub struct SqlExecute {
    /// The connection URL (`postgres://`, `mysql://`, `mariadb://`,
    /// `sqlite:`); prefer `url_secret` when it holds a password.
    #[serde(
        default,
        deserialize_with = "connection_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<String>,
    /// The name of the secret holding the connection URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret: Option<String>,
    /// A statement, or a list of statements run in one transaction. Not
    /// an expression: `{{` is refused.
    #[serde(deserialize_with = "statements")]
    #[schemars(extend("x-template" = true))]
    pub query: Statements,
    /// The parameters (expressions allowed): a list for one statement, a
    /// list of lists for several. The `params` input gives them instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Value>,
    /// With the `batch` input: the fields of each object element, in
    /// placeholder order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch_fields: Vec<String>,
    /// The longest a statement may run, such as `30s`; `0` for no limit.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout: DurationText,
    /// The longest wait for a connection, such as `10s`.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: DurationText,
    /// The most connections the engine opens to this database.
    #[serde(default = "default_max_connections_nz")]
    pub max_connections: NonZeroU32,
}

/// Values given at run time to an [`SqlExecute`].
#[derive(Ports, Debug)]
pub struct SqlExecuteInput {
    /// The parameters, instead of the config's `params`.
    pub params: Option<Vec<Value>>,
    /// Runs the (single) statement once per element, in one transaction:
    /// each element a list of parameters, or an object read through
    /// `batch_fields`.
    pub batch: Option<Vec<Value>>,
    /// Any value: connect an output here to run this node after that
    /// node (the value itself is not used).
    pub after: Option<Value>,
}

/// What an [`SqlExecute`] changed.
#[derive(Ports, Debug)]
pub struct SqlExecuted {
    /// Rows affected by all the statements together.
    pub rows_affected: u64,
    /// The id of the last row inserted (MySQL auto-increment, SQLite
    /// rowid), or null.
    pub last_insert_id: Value,
    /// One `{rows_affected, last_insert_id}` per statement or batch element,
    /// in order.
    pub results: Vec<Value>,
}

impl SqlExecute {
    /// Statements on the database at `url` (a `url_secret` is better for
    /// URLs with passwords: set it and clear `url`).
    ///
    /// # Errors
    /// The URL's scheme is not a supported database, or a statement is not
    /// acceptable SQL text (empty, or containing `{{`).
    pub fn new(url: impl Into<String>, query: impl Into<Statements>) -> Result<Self, String> {
        let (url, query) = (url.into(), query.into());
        config::Backend::of(&url)?;
        match &query {
            Statements::One(sql) => config::check_sql(sql)?,
            Statements::Many(list) if list.is_empty() => {
                return Err("the list of statements is empty".to_owned());
            }
            Statements::Many(list) => list.iter().try_for_each(|sql| config::check_sql(sql))?,
        }
        Ok(SqlExecute {
            url: Some(url),
            url_secret: None,
            query,
            params: Vec::new(),
            batch_fields: Vec::new(),
            statement_timeout: default_statement_timeout(),
            connect_timeout: default_connect_timeout(),
            max_connections: default_max_connections_nz(),
        })
    }

    /// The same statements with these parameters.
    #[must_use]
    pub fn params(mut self, params: impl IntoIterator<Item = Value>) -> Self {
        self.params = params.into_iter().collect();
        self
    }

    /// The parameter lists of the work, one per statement run, and whether
    /// it runs in a transaction.
    fn plan(&self, input: SqlExecuteInput) -> Result<(Work, bool), NodeError> {
        let params = chosen_params(&self.params, input.params)?;
        let fail = |m: String| NodeError::permanent(m);
        match (&self.query, input.batch) {
            (Statements::One(_), None) => Ok((vec![("config.query".to_owned(), params)], false)),
            (Statements::One(_), Some(items)) => {
                if !params.is_empty() {
                    return Err(fail(
                        "input `batch`: with a batch, each element holds the parameters; `params` must be empty".to_owned(),
                    ));
                }
                let mut work = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let params = match item {
                        Value::Array(list) => list,
                        Value::Object(mut object) if !self.batch_fields.is_empty() => self
                            .batch_fields
                            .iter()
                            .map(|field| {
                                object.remove(field).ok_or_else(|| {
                                    fail(format!(
                                        "input `batch`: element {i} has no field `{field}` (config.batch_fields)"
                                    ))
                                })
                            })
                            .collect::<Result<_, _>>()?,
                        other => {
                            return Err(fail(format!(
                                "input `batch`: element {i} is {}; expected a list of parameters{}",
                                crate::kind(&other),
                                if self.batch_fields.is_empty() {
                                    " (or an object, with `batch_fields` set)"
                                } else {
                                    " or an object"
                                }
                            )));
                        }
                    };
                    work.push((format!("batch element {i}"), params));
                }
                Ok((work, true))
            }
            (Statements::Many(list), None) => {
                let lists: Vec<Vec<Value>> = if params.is_empty() {
                    vec![Vec::new(); list.len()]
                } else if params.len() != list.len() {
                    return Err(fail(format!(
                        "params: {} list(s) of parameters for {} statements; give one list per statement (`[]` for none)",
                        params.len(),
                        list.len()
                    )));
                } else {
                    params
                        .into_iter()
                        .enumerate()
                        .map(|(i, p)| match p {
                            Value::Array(p) => Ok(p),
                            other => Err(fail(format!(
                                "params[{i}]: expected the list of parameters of statement {i}, got {}",
                                crate::kind(&other)
                            ))),
                        })
                        .collect::<Result<_, _>>()?
                };
                let work = lists
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| (format!("config.query[{i}]"), p))
                    .collect();
                Ok((work, true))
            }
            (Statements::Many(_), Some(_)) => Err(fail(
                "input `batch`: a batch runs one statement; `query` is a list".to_owned(),
            )),
        }
    }
}

/// The statements an execution runs: where each comes from (for messages)
/// and its parameters.
type Work = Vec<(String, Vec<Value>)>;

fn done_json(done: Done) -> Value {
    serde_json::json!({
        "rows_affected": done.rows_affected,
        "last_insert_id": done.last_insert_id,
    })
}

impl Run for SqlExecute {
    async fn run(&self, input: SqlExecuteInput, ctx: &Context) -> Result<SqlExecuted, NodeError> {
        let (plan, transaction) = self.plan(input)?;
        let connect = Connect {
            url: self.url.as_deref(),
            url_secret: self.url_secret.as_deref(),
            settings: settings(
                self.max_connections,
                self.connect_timeout,
                self.statement_timeout,
            ),
        };
        let (target, pool) = connect.open(ctx)?;
        let work: Vec<Sql<'_>> = plan
            .iter()
            .enumerate()
            .map(|(i, (place, params))| Sql {
                sql: match &self.query {
                    Statements::One(sql) => sql,
                    Statements::Many(list) => &list[i],
                },
                params,
                place: place.clone(),
            })
            .collect();
        if work.is_empty() {
            return Ok(SqlExecuted {
                rows_affected: 0,
                last_insert_id: Value::Null,
                results: Vec::new(),
            });
        }
        let done = with_pool!(&pool, p => execute_on(p, &target, connect.settings, &work, transaction).await)
            .map_err(|f| f.into_node_error(&target))?;
        Ok(SqlExecuted {
            rows_affected: done.iter().map(|d| d.rows_affected).sum(),
            last_insert_id: done
                .iter()
                .rev()
                .find_map(|d| d.last_insert_id)
                .map_or(Value::Null, Value::from),
            results: done.into_iter().map(done_json).collect(),
        })
    }
}
