//! Running statements, the same way on the three databases: prepare, check
//! the parameter count, bind, run within the statement timeout, and read
//! the rows as JSON objects.

use std::future::Future;
use std::time::Duration;

use futures::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::{
    Column, ColumnIndex, Database, Either, Executor, IntoArguments, MySql, Postgres, Row, Sqlite,
    Statement, TypeInfo,
};

use super::error::Failure;
use super::{mysql, pg, sqlite};

/// One statement to run: its SQL, its parameters, and where it comes from
/// for messages (`config.query`, `config.query[1]`, `batch item 2`).
#[derive(Debug)]
pub(crate) struct Sql<'a> {
    pub(crate) sql: &'a str,
    pub(crate) params: &'a [Value],
    pub(crate) place: String,
}

/// How a query's rows are bounded and read.
#[derive(Debug)]
pub(crate) struct RowRules<'a> {
    /// At most this many rows are read.
    pub(crate) max_rows: u64,
    /// Whether more rows than `max_rows` truncate the result (or fail).
    pub(crate) truncate: bool,
    /// Columns whose text is parsed as JSON.
    pub(crate) json_columns: &'a [String],
}

/// A query's result.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Value>,
    pub(crate) truncated: bool,
}

/// A statement's effect.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Done {
    pub(crate) rows_affected: u64,
    pub(crate) last_insert_id: Option<i64>,
}

/// What differs between the databases.
pub(crate) trait Dialect: Database {
    /// The bound parameters of a prepared statement.
    fn arguments<'a>(
        statement: &Self::Statement<'_>,
        params: &[Value],
    ) -> Result<Self::Arguments<'a>, String>;

    /// The JSON of column `index` of `row`; `text` when the caller reads
    /// it as text (a JSON column), for MySQL columns that the server
    /// reports as binary although they hold text.
    fn value(row: &Self::Row, index: usize, text: bool) -> Result<Value, String>;

    /// How many rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// The id of the row `sql` inserted, where the database says it.
    fn last_insert_id(result: &Self::QueryResult, sql: &str) -> Option<i64>;

    /// Makes `conn` interrupt its statements after `after`, for databases
    /// that have no server-side statement timeout; the guard disarms it.
    fn arm(
        conn: &mut Self::Connection,
        after: Duration,
    ) -> impl Future<Output = Result<Option<sqlite::Deadline>, sqlx::Error>> + Send;
}

impl Dialect for Postgres {
    fn arguments<'a>(
        statement: &Self::Statement<'_>,
        params: &[Value],
    ) -> Result<Self::Arguments<'a>, String> {
        use sqlx::Arguments as _;
        let types = match statement.parameters() {
            Some(Either::Left(types)) => types,
            _ => &[],
        };
        let mut args = sqlx::postgres::PgArguments::default();
        for (i, (ty, value)) in types.iter().zip(params).enumerate() {
            let param =
                pg::param(ty, value).map_err(|e| format!("params[{i}] (${}): {e}", i + 1))?;
            args.add(param)
                .map_err(|e| format!("params[{i}] (${}): {e}", i + 1))?;
        }
        Ok(args)
    }

    fn value(row: &Self::Row, index: usize, _: bool) -> Result<Value, String> {
        let raw = row.try_get_raw(index).map_err(|e| e.to_string())?;
        pg::value(&raw)
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn last_insert_id(_: &Self::QueryResult, _: &str) -> Option<i64> {
        None
    }

    async fn arm(
        _: &mut Self::Connection,
        _: Duration,
    ) -> Result<Option<sqlite::Deadline>, sqlx::Error> {
        Ok(None)
    }
}

impl Dialect for MySql {
    fn arguments<'a>(
        _: &Self::Statement<'_>,
        params: &[Value],
    ) -> Result<Self::Arguments<'a>, String> {
        mysql::arguments(params)
    }

    fn value(row: &Self::Row, index: usize, text: bool) -> Result<Value, String> {
        mysql::value(row, index, text)
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn last_insert_id(result: &Self::QueryResult, _: &str) -> Option<i64> {
        match result.last_insert_id() {
            0 => None,
            id => i64::try_from(id).ok(),
        }
    }

    async fn arm(
        _: &mut Self::Connection,
        _: Duration,
    ) -> Result<Option<sqlite::Deadline>, sqlx::Error> {
        Ok(None)
    }
}

impl Dialect for Sqlite {
    fn arguments<'a>(
        _: &Self::Statement<'_>,
        params: &[Value],
    ) -> Result<Self::Arguments<'a>, String> {
        sqlite::arguments(params)
    }

    fn value(row: &Self::Row, index: usize, _: bool) -> Result<Value, String> {
        sqlite::value(row, index)
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn last_insert_id(result: &Self::QueryResult, sql: &str) -> Option<i64> {
        // The connection's last insert rowid, which a statement that
        // inserted nothing leaves as it was.
        (result.rows_affected() > 0 && sqlite::inserts(sql)).then(|| result.last_insert_rowid())
    }

    async fn arm(
        conn: &mut Self::Connection,
        after: Duration,
    ) -> Result<Option<sqlite::Deadline>, sqlx::Error> {
        if after.is_zero() {
            return Ok(None);
        }
        sqlite::arm(conn, after).await.map(Some)
    }
}

/// The client's own limit for one statement: the server's statement
/// timeout, and a little more so that the server's error (with its code)
/// normally comes first. `None` when the timeout is off.
fn backstop(statement_timeout: Duration) -> Option<Duration> {
    (!statement_timeout.is_zero()).then(|| statement_timeout + Duration::from_secs(2))
}

/// Runs `work` within the backstop of `statement_timeout`.
async fn bounded<T>(
    statement_timeout: Duration,
    place: &str,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match backstop(statement_timeout) {
        None => work.await,
        Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(Failure::retryable(format!(
                "{place}: no result within {} (config.statement_timeout)",
                ghostflow::document::DurationText(statement_timeout)
            )))
        }),
    }
}

/// Prepares `sql` and checks that it takes as many parameters as given.
async fn prepare<'c, DB>(
    conn: &'c mut DB::Connection,
    sql: &Sql<'_>,
) -> Result<DB::Statement<'static>, Failure>
where
    DB: Dialect,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
{
    let statement = conn
        .prepare(sql.sql)
        .await
        .map_err(|e| Failure::sql(&e, &sql.place))?
        .to_owned();
    let wanted = match statement.parameters() {
        Some(Either::Left(types)) => types.len(),
        Some(Either::Right(count)) => count,
        None => sql.params.len(),
    };
    if wanted != sql.params.len() {
        return Err(Failure::permanent(format!(
            "{}: the SQL has {wanted} parameter placeholder(s) but {} value(s) were given in `params`",
            sql.place,
            sql.params.len()
        )));
    }
    Ok(statement)
}

/// Runs a query and reads its rows.
pub(crate) async fn fetch<DB>(
    conn: &mut DB::Connection,
    sql: &Sql<'_>,
    rules: &RowRules<'_>,
    statement_timeout: Duration,
) -> Result<Rows, Failure>
where
    DB: Dialect,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'a> DB::Arguments<'a>: IntoArguments<'a, DB>,
    usize: ColumnIndex<DB::Row>,
{
    let _deadline = DB::arm(conn, statement_timeout)
        .await
        .map_err(|e| Failure::sql(&e, &sql.place))?;
    bounded(statement_timeout, &sql.place, async {
        let statement = prepare::<DB>(conn, sql).await?;
        let columns: Vec<String> = statement
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        check_distinct(&columns, &sql.place)?;
        for name in rules.json_columns {
            if !columns.contains(name) {
                return Err(Failure::permanent(format!(
                    "config.json_columns: the result has no column `{name}` (its columns: {})",
                    columns.join(", ")
                )));
            }
        }
        let args = DB::arguments(&statement, sql.params)
            .map_err(|e| Failure::permanent(format!("{}: {e}", sql.place)))?;
        let mut stream = statement.query_with(args).fetch(&mut *conn);
        let mut rows = Vec::new();
        let mut truncated = false;
        while let Some(row) = stream
            .try_next()
            .await
            .map_err(|e| Failure::sql(&e, &sql.place))?
        {
            if u64::try_from(rows.len()).unwrap_or(u64::MAX) >= rules.max_rows {
                if rules.truncate {
                    truncated = true;
                    break;
                }
                return Err(Failure::permanent(format!(
                    "{}: the query returned more than {} rows (config.max_rows); add a LIMIT, raise max_rows or set over_max_rows: truncate",
                    sql.place, rules.max_rows
                )));
            }
            rows.push(row_json::<DB>(&row, &columns, rules.json_columns, &sql.place)?);
        }
        Ok(Rows {
            columns,
            rows,
            truncated,
        })
    })
    .await
}

/// A row as an object, in column order.
fn row_json<DB: Dialect>(
    row: &DB::Row,
    columns: &[String],
    json_columns: &[String],
    place: &str,
) -> Result<Value, Failure>
where
    usize: ColumnIndex<DB::Row>,
{
    let mut object = Map::with_capacity(columns.len());
    for (i, name) in columns.iter().enumerate() {
        let json = json_columns.contains(name);
        let mut value = DB::value(row, i, json).map_err(|e| {
            let ty = row
                .try_column(i)
                .map(|c| c.type_info().name().to_owned())
                .unwrap_or_default();
            Failure::permanent(format!("{place}: column `{name}` ({ty}): {e}"))
        })?;
        if json && let Value::String(text) = &value {
            value = serde_json::from_str(text).map_err(|e| {
                Failure::permanent(format!(
                    "{place}: column `{name}` is not valid JSON (config.json_columns): {e}"
                ))
            })?;
        }
        object.insert(name.clone(), value);
    }
    Ok(Value::Object(object))
}

/// Rows become objects: two columns with one name would lose one.
fn check_distinct(columns: &[String], place: &str) -> Result<(), Failure> {
    for (i, name) in columns.iter().enumerate() {
        if let Some(j) = columns[..i].iter().position(|c| c == name) {
            return Err(Failure::permanent(format!(
                "{place}: columns {} and {} are both named `{name}`; give them distinct names with AS",
                j + 1,
                i + 1
            )));
        }
    }
    Ok(())
}

/// Runs a statement and says what it changed.
pub(crate) async fn execute<DB>(
    conn: &mut DB::Connection,
    sql: &Sql<'_>,
    statement_timeout: Duration,
) -> Result<Done, Failure>
where
    DB: Dialect,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'a> DB::Arguments<'a>: IntoArguments<'a, DB>,
{
    let _deadline = DB::arm(conn, statement_timeout)
        .await
        .map_err(|e| Failure::sql(&e, &sql.place))?;
    bounded(statement_timeout, &sql.place, async {
        let statement = prepare::<DB>(conn, sql).await?;
        let args = DB::arguments(&statement, sql.params)
            .map_err(|e| Failure::permanent(format!("{}: {e}", sql.place)))?;
        let result = statement
            .query_with(args)
            .execute(&mut *conn)
            .await
            .map_err(|e| Failure::sql(&e, &sql.place))?;
        Ok(Done {
            rows_affected: DB::rows_affected(&result),
            last_insert_id: DB::last_insert_id(&result, sql.sql),
        })
    })
    .await
}
