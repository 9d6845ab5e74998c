//! Ready-made nodes for GhostFlow, one cargo feature per family.
//!
//! | feature     | nodes |
//! |-------------|-------|
//! | `control`   | [`control::If`], [`control::Switch`], [`control::Merge`], [`control::ForEach`], [`control::Subflow`], [`control::Delay`], [`control::Fail`], [`control::Passthrough`] |
//! | `data`      | [`data::Set`], [`data::Transform`], [`data::Filter`], [`data::Sort`], [`data::Limit`], [`data::Deduplicate`], [`data::Aggregate`], [`data::SplitOut`], [`data::JsonParse`], [`data::JsonStringify`], [`data::CsvParse`], [`data::CsvWrite`], [`data::DatetimeParse`], [`data::DatetimeFormat`], [`data::DatetimeAdd`], [`data::DatetimeDiff`], [`data::DatetimeStartOf`] |
//! | `text`      | [`text::Template`], [`text::RegexMatch`], [`text::RegexExtract`], [`text::RegexReplace`], [`text::Hash`], [`text::Hmac`], [`text::Base64`] |
//! | `http`      | [`http::HttpRequest`], [`http::Graphql`] |
//! | `file`      | [`file::FileRead`], [`file::FileWrite`], [`file::FileList`] (under a [`file::FileRoot`]) |
//! | `sql`       | [`sql::SqlQuery`], [`sql::SqlQueryOne`], [`sql::SqlExecute`] |
//! | `messaging` | [`messaging::NatsPublish`], [`messaging::NatsRequest`], [`messaging::Redis`], [`messaging::MqttPublish`], [`messaging::SlackMessage`], [`messaging::DiscordMessage`] |
//! | `email`     | [`email::EmailSend`] |
//! | `ai`        | [`ai::Chat`], [`ai::Embed`], [`ai::Extract`] (and the typed [`ai::ExtractAs`]), [`ai::Agent`], [`ai::TextSplit`], [`ai::DocumentLoad`], [`ai::VectorUpsert`], [`ai::VectorSearch`], [`ai::VectorDelete`] |
//!
//! Every family is a default feature; turn off default features and pick
//! the families you need to build less.
//!
//! Rate limits and circuit breakers are engine policies
//! ([`ghostflow::RateLimit`], [`ghostflow::CircuitBreaker`]), not nodes:
//! a policy wraps any node's attempts (`rate_limit: 20/min` on an
//! `http_request` or a `sql_execute` alike), shares its budget by key across
//! executions, and composes with retries and concurrency limits, where a
//! node would have to sit in front of every call it guards.
//!
//! [`register_all`] adds every node compiled in to a [`Registry`], so that
//! flow documents can name them; [`specs`] lists their specs.

#[cfg(feature = "ai")]
pub mod ai;
#[cfg(feature = "control")]
pub mod control;
#[cfg(feature = "data")]
pub mod data;
#[cfg(feature = "email")]
pub mod email;
#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "messaging")]
pub mod messaging;
#[cfg(feature = "net")]
pub mod net;
#[cfg(feature = "sql")]
pub mod sql;
#[cfg(feature = "text")]
pub mod text;

#[cfg(feature = "net")]
pub use net::NetworkPolicy;

use ghostflow::{NodeSpec, Registry};

/// Registers every node type of the enabled families.
pub fn register_all(registry: &mut Registry) -> &mut Registry {
    #[cfg(feature = "control")]
    registry
        .register::<control::If>()
        .register::<control::Merge>()
        .register::<control::Delay>()
        .register::<control::Fail>()
        .register::<control::Passthrough>()
        .register::<control::Subflow>()
        .register::<control::ForEach>()
        .register_dynamic(
            control::Switch::catalog_spec(),
            control::Switch::shape,
            control::Switch::from_config,
        );
    #[cfg(feature = "data")]
    data::register(registry);
    #[cfg(feature = "text")]
    text::register(registry);
    #[cfg(feature = "http")]
    registry
        .register::<http::HttpRequest>()
        .register::<http::Graphql>();
    #[cfg(feature = "file")]
    file::register(registry);
    #[cfg(feature = "sql")]
    sql::register(registry);
    #[cfg(feature = "messaging")]
    messaging::register(registry);
    #[cfg(feature = "email")]
    email::register(registry);
    #[cfg(feature = "ai")]
    ai::register(registry);
    registry
}

/// The JSON kind of a value, for messages ("an array", "a string").
#[cfg_attr(
    not(any(
        feature = "control",
        feature = "data",
        feature = "text",
        feature = "http",
        feature = "file",
        feature = "sql",
        feature = "messaging",
        feature = "email",
        feature = "ai"
    )),
    expect(dead_code, reason = "used by every family, and no family is enabled")
)]
pub(crate) fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `true`, for `#[serde(default = "crate::yes")]` on the switches that
/// are on unless turned off.
#[cfg_attr(
    not(any(
        feature = "data",
        feature = "text",
        feature = "http",
        feature = "messaging",
        feature = "ai"
    )),
    expect(dead_code, reason = "used by these families, and none is enabled")
)]
pub(crate) fn yes() -> bool {
    true
}

/// A registry with every node type of the enabled families.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    register_all(&mut registry);
    registry
}

/// The specs of every node type compiled into this crate, sorted by type name.
pub fn specs() -> Vec<NodeSpec> {
    registry().specs().cloned().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn specs_are_complete_and_unique() {
        let specs = super::specs();
        // Every node type of an enabled family, each once.
        assert_eq!(specs.len(), super::registry().len());
        for spec in &specs {
            assert!(
                !spec.description.is_empty(),
                "{} has no description",
                spec.type_name
            );
            assert!(spec.config_schema.is_object());
        }
        let mut names: Vec<_> = specs.iter().map(|s| &s.type_name).collect();
        names.dedup();
        assert_eq!(names.len(), specs.len());
    }
}
