//! What the SQL nodes' configs share: the connection URL and how to show it,
//! checked SQL text, limits and their defaults.

use std::time::Duration;

use ghostflow::document::DurationText;
use ghostflow::{Context, NodeError};
use serde::{Deserialize, Deserializer};

/// The database behind a connection URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Backend {
    /// `postgres://`, `postgresql://`.
    Postgres,
    /// `mysql://`, `mariadb://`.
    MySql,
    /// `sqlite://path`, `sqlite:path`, `sqlite::memory:`.
    Sqlite,
}

impl Backend {
    /// The database a URL names, by its scheme.
    pub(crate) fn of(url: &str) -> Result<Backend, String> {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match scheme.as_str() {
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "mysql" | "mariadb" => Ok(Backend::MySql),
            "sqlite" => Ok(Backend::Sqlite),
            "" => Err(
                "not a connection URL; write it like `postgres://user@host/db`, `mysql://user@host/db` or `sqlite://path?mode=rwc`"
                    .to_owned(),
            ),
            other => Err(format!(
                "the scheme `{other}` is not supported; use postgres://, mysql://, mariadb:// or sqlite:"
            )),
        }
    }

    /// The name used in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "PostgreSQL",
            Backend::MySql => "MySQL",
            Backend::Sqlite => "SQLite",
        }
    }
}

/// A connection URL as the node got it, with what must never be shown.
#[derive(Clone)]
pub(crate) struct Target {
    /// The URL itself (may hold a password).
    pub(crate) url: String,
    /// The database.
    pub(crate) backend: Backend,
    /// The URL for messages, its password replaced with `***`.
    pub(crate) shown: String,
    /// Texts masked in every message: the password, raw and decoded.
    hidden: Vec<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Reads the URL of a config: `url`, or the secret `url_secret`.
    pub(crate) fn resolve(
        url: Option<&str>,
        url_secret: Option<&str>,
        ctx: &Context,
    ) -> Result<Target, NodeError> {
        let url = match (url, url_secret) {
            (Some(url), None) => url.to_owned(),
            (None, Some(name)) => ctx.secret(name)?.expose().to_owned(),
            (Some(_), Some(_)) => {
                return Err(NodeError::permanent(
                    "config: give either `url` or `url_secret`, not both",
                ));
            }
            (None, None) => {
                return Err(NodeError::permanent(
                    "config: missing the connection: give `url` or `url_secret` (the name of a secret holding the URL)",
                ));
            }
        };
        let place = if url_secret.is_some() {
            "the URL in secret `url_secret`"
        } else {
            "config.url"
        };
        let backend =
            Backend::of(&url).map_err(|e| NodeError::permanent(format!("{place}: {e}")))?;
        Ok(Target::new(url, backend))
    }

    pub(crate) fn new(url: String, backend: Backend) -> Target {
        let mut hidden = Vec::new();
        let shown = match url::Url::parse(&url) {
            Ok(parsed) if parsed.password().is_some() => {
                if let Some(password) = parsed.password() {
                    hidden.push(password.to_owned());
                    if let Ok(decoded) = urlencoding_decode(password) {
                        hidden.push(decoded);
                    }
                }
                let mut shown = parsed.clone();
                let _ = shown.set_password(Some("***"));
                shown.to_string()
            }
            Ok(_) => url.clone(),
            // Not a URL `url` can read (such as `sqlite::memory:`): shown as
            // it is unless it looks like it holds credentials.
            Err(_) if url.contains('@') => format!("{}://***", backend.name().to_lowercase()),
            Err(_) => url.clone(),
        };
        hidden.retain(|h| !h.is_empty() && h != "***");
        hidden.sort_by_key(|h| std::cmp::Reverse(h.len()));
        Target {
            url,
            backend,
            shown,
            hidden,
        }
    }

    /// `text` with the password masked, wherever and however it appears.
    pub(crate) fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if out.contains(&self.url) && self.url != self.shown {
            out = out.replace(&self.url, &self.shown);
        }
        for hidden in &self.hidden {
            if out.contains(hidden.as_str()) {
                out = out.replace(hidden.as_str(), "***");
            }
        }
        out
    }
}

/// Percent-decodes a URL component.
fn urlencoding_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// Accepts a connection URL whose scheme names a supported database.
pub(crate) fn connection_url<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let url = String::deserialize(deserializer)?;
    Backend::of(&url).map_err(serde::de::Error::custom)?;
    Ok(Some(url))
}

/// Accepts SQL text: not empty, and without `{{`.
pub(crate) fn sql_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    check_sql(&text).map_err(serde::de::Error::custom)?;
    Ok(text)
}

/// Why `text` is not acceptable SQL for a node, if it is not.
pub(crate) fn check_sql(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the SQL text is empty".to_owned());
    }
    if text.contains("{{") {
        return Err(
            "the SQL contains `{{`: expressions are not evaluated in SQL, because splicing values into SQL text invites injection; write placeholders (`$1`, `$2` for PostgreSQL and SQLite, `?` for MySQL) and give the values in `params`"
                .to_owned(),
        );
    }
    Ok(())
}

/// What a query does when its result has more rows than `max_rows`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OverMaxRows {
    /// The node fails (permanently: the same query would return as many).
    #[default]
    Fail,
    /// The first `max_rows` rows are the output and `truncated` is true.
    Truncate,
}

/// 1000 rows.
pub(crate) fn default_max_rows() -> u64 {
    1000
}

/// 30 seconds.
pub(crate) fn default_statement_timeout() -> DurationText {
    DurationText(Duration::from_secs(30))
}

/// 10 seconds.
pub(crate) fn default_connect_timeout() -> DurationText {
    DurationText(Duration::from_secs(10))
}

/// 10 connections.
pub(crate) fn default_max_connections() -> u32 {
    10
}

/// The pool settings of a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PoolSettings {
    pub(crate) max_connections: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) statement_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_come_from_the_scheme() {
        assert_eq!(Backend::of("postgres://u@h/db"), Ok(Backend::Postgres));
        assert_eq!(Backend::of("postgresql://h"), Ok(Backend::Postgres));
        assert_eq!(Backend::of("MySQL://h/db"), Ok(Backend::MySql));
        assert_eq!(Backend::of("mariadb://h/db"), Ok(Backend::MySql));
        assert_eq!(Backend::of("sqlite::memory:"), Ok(Backend::Sqlite));
        assert_eq!(
            Backend::of("sqlite://data.db?mode=rwc"),
            Ok(Backend::Sqlite)
        );
        assert!(
            Backend::of("redis://h")
                .unwrap_err()
                .contains("`redis` is not supported")
        );
        assert!(
            Backend::of("just text")
                .unwrap_err()
                .starts_with("not a connection URL")
        );
    }

    #[test]
    fn passwords_are_masked_raw_and_decoded() {
        let t = Target::new(
            "postgres://ada:s%40cret@db.example:5432/app".to_owned(),
            Backend::Postgres,
        );
        assert_eq!(t.shown, "postgres://ada:***@db.example:5432/app");
        assert_eq!(
            t.mask("failed for postgres://ada:s%40cret@db.example:5432/app and s@cret"),
            "failed for postgres://ada:***@db.example:5432/app and ***"
        );
        let plain = Target::new("mysql://root@127.0.0.1/test".to_owned(), Backend::MySql);
        assert_eq!(plain.shown, "mysql://root@127.0.0.1/test");
        assert_eq!(plain.mask("root here"), "root here");
    }

    #[test]
    fn sql_with_braces_is_refused() {
        assert!(check_sql("SELECT $1").is_ok());
        assert!(check_sql("  ").is_err());
        let err = check_sql("SELECT * FROM t WHERE id = {{ input.id }}").unwrap_err();
        assert!(err.contains("give the values in `params`"), "{err}");
    }
}
