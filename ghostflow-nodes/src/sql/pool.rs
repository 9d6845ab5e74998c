//! Connection pools, one per URL and settings per engine, made on first use.

use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ghostflow::Context;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection, Database, Executor, MySql, Pool, Postgres, Row, Sqlite};

use super::config::{Backend, PoolSettings, Target};
use super::error::Failure;

/// A pool of one of the three databases.
#[derive(Clone, Debug)]
pub(crate) enum AnyPool {
    /// PostgreSQL.
    Postgres(Pool<Postgres>),
    /// MySQL or MariaDB.
    MySql(Pool<MySql>),
    /// SQLite.
    Sqlite(Pool<Sqlite>),
}

/// The most pools an engine keeps; the least recently used goes first
/// (executions using it keep it until they finish).
const MAX_POOLS: usize = 32;

/// The pools of one engine, by URL and settings.
#[derive(Default)]
pub(crate) struct SqlPools {
    pools: Mutex<Vec<((String, PoolSettings), AnyPool)>>,
}

impl std::fmt::Debug for SqlPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("SqlPools").field("pools", &count).finish()
    }
}

impl SqlPools {
    /// The engine's pool for `target` with `settings`, made now (without
    /// connecting) if there is none.
    pub(crate) fn get(
        ctx: &Context,
        target: &Target,
        settings: PoolSettings,
    ) -> Result<AnyPool, Failure> {
        let shared = ctx.shared(SqlPools::default);
        let key = (target.url.clone(), key_settings(target, settings));
        let mut pools = shared.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = pools.iter().position(|(k, _)| *k == key) {
            let entry = pools.remove(at);
            let pool = entry.1.clone();
            pools.push(entry);
            return Ok(pool);
        }
        let pool = make(target, settings)?;
        if pools.len() >= MAX_POOLS {
            pools.remove(0);
        }
        pools.push((key, pool.clone()));
        Ok(pool)
    }
}

/// The settings that tell `target`'s pools apart: all of them, except for
/// SQLite, which applies the statement timeout to each statement (not to
/// its connections), so that the nodes naming the same in-memory database
/// share it whatever their `statement_timeout`.
fn key_settings(target: &Target, settings: PoolSettings) -> PoolSettings {
    match target.backend {
        Backend::Sqlite => PoolSettings {
            statement_timeout: Duration::ZERO,
            ..settings
        },
        Backend::Postgres | Backend::MySql => settings,
    }
}

fn config_error(target: &Target, error: &sqlx::Error) -> Failure {
    Failure::permanent(format!("invalid connection URL {}: {error}", target.shown))
}

/// A lazy pool: connections are made when the first statement needs one.
fn make(target: &Target, settings: PoolSettings) -> Result<AnyPool, Failure> {
    let timeout_ms = u64::try_from(settings.statement_timeout.as_millis()).unwrap_or(u64::MAX);
    Ok(match target.backend {
        Backend::Postgres => {
            let options = PgConnectOptions::from_str(&target.url)
                .map_err(|e| config_error(target, &e))?
                .application_name("ghostflow")
                .options([("statement_timeout", timeout_ms.to_string())]);
            AnyPool::Postgres(
                PgPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(settings.connect_timeout)
                    .connect_lazy_with(options),
            )
        }
        Backend::MySql => {
            // The driver reads `mysql://`; MariaDB speaks the same protocol.
            let url = match target.url.split_once(':') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => {
                    format!("mysql:{rest}")
                }
                _ => target.url.clone(),
            };
            let options =
                MySqlConnectOptions::from_str(&url).map_err(|e| config_error(target, &e))?;
            AnyPool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(settings.connect_timeout)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            // MariaDB and MySQL name their statement timeouts
                            // differently (and MySQL's covers SELECT only).
                            let row = conn.fetch_one("SELECT VERSION()").await?;
                            let version: String = row.try_get(0)?;
                            let set = if version.contains("MariaDB") {
                                format!(
                                    "SET SESSION max_statement_time = {}",
                                    Duration::from_millis(timeout_ms).as_secs_f64()
                                )
                            } else {
                                format!("SET SESSION max_execution_time = {timeout_ms}")
                            };
                            conn.execute(set.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect_lazy_with(options),
            )
        }
        Backend::Sqlite => {
            let options = SqliteConnectOptions::from_str(&target.url)
                .map_err(|e| config_error(target, &e))?;
            let in_memory = target.url.contains(":memory:") || target.url.contains("mode=memory");
            let mut pool = SqlitePoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(settings.connect_timeout);
            if in_memory {
                // The database lives as long as one of its connections: keep
                // one open for the life of the engine.
                pool = pool
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            }
            AnyPool::Sqlite(pool.connect_lazy_with(options))
        }
    })
}

/// A connection from `pool`. When none can be had in time, one direct
/// attempt says why (the pool itself only reports that it waited).
pub(crate) async fn acquire<DB: Database>(
    pool: &Pool<DB>,
    target: &Target,
    connect_timeout: Duration,
) -> Result<PoolConnection<DB>, Failure> {
    match pool.acquire().await {
        Ok(conn) => Ok(conn),
        Err(sqlx::Error::PoolTimedOut) => {
            let options = pool.connect_options();
            match tokio::time::timeout(connect_timeout, options.connect()).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    Err(Failure::connect(&sqlx::Error::PoolTimedOut, target))
                }
                Ok(Err(e)) => Err(Failure::connect(&e, target)),
                Err(_) => Err(Failure::retryable(format!(
                    "cannot connect to {}: no answer within {} (config.connect_timeout)",
                    target.shown,
                    ghostflow::document::DurationText(connect_timeout)
                ))),
            }
        }
        Err(e) => Err(Failure::connect(&e, target)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PoolSettings {
        PoolSettings {
            max_connections: 2,
            connect_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn bad_urls_are_reported_without_their_password() {
        for (url, backend) in [
            (
                "postgres://ada:pa%24%24word@db:99999/app",
                Backend::Postgres,
            ),
            (
                "postgres://ada:pa%24%24word@db/app?sslmode=sometimes",
                Backend::Postgres,
            ),
            ("mysql://ada:pa%24%24word@db:99999/app", Backend::MySql),
            (
                "mariadb://ada:pa%24%24word@db/app?ssl-mode=sometimes",
                Backend::MySql,
            ),
        ] {
            let target = Target::new(url.to_owned(), backend);
            let error = make(&target, settings())
                .map(|_| ())
                .unwrap_err()
                .into_node_error(&target);
            let message = error.message();
            assert!(
                message.starts_with("invalid connection URL ") && message.contains("***"),
                "{message}"
            );
            assert!(
                !message.contains("pa%24%24word") && !message.contains("pa$$word"),
                "{message}"
            );
            assert!(!error.is_retryable());
        }
    }
}
