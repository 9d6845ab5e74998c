//! Ready-made nodes for GhostFlow, one cargo feature per family.
//!
//! | feature   | nodes |
//! |-----------|-------|
//! | `control` | [`control::If`], [`control::Switch`], [`control::Merge`], [`control::ForEach`], [`control::Subflow`], [`control::Delay`], [`control::Fail`], [`control::Passthrough`] |
//! | `data`    | [`data::Set`] |
//! | `text`    | [`text::Template`] |
//! | `http`    | [`http::HttpRequest`], [`http::Graphql`] |
//!
//! [`register_all`] adds every node compiled in to a [`Registry`], so that
//! flow documents can name them; [`specs`] lists their specs.

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
    registry
}

/// The JSON kind of a value, for messages ("an array", "a string").
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
