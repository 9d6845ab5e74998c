//! Helpers shared by the integration tests of the node families: each test
//! file includes this module with `mod common;`.

use ghostflow::Flow;
use ghostflow::document::{Format, Loader};

/// Loads a YAML flow document with every node of the enabled families;
/// panics with the problems (and the document) when it does not load.
pub(crate) fn load(yaml: &str) -> Flow {
    let registry = ghostflow_nodes::registry();
    Loader::new(&registry)
        .load_bytes(yaml.as_bytes(), Format::Yaml, None)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
        .flow
}

/// The problems of a YAML flow document that must not load, one
/// `path: message` line each; panics when it loads.
pub(crate) fn load_error(yaml: &str) -> String {
    let registry = ghostflow_nodes::registry();
    match Loader::new(&registry).load_bytes(yaml.as_bytes(), Format::Yaml, None) {
        Ok(_) => panic!("the document loaded, but should have been refused:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}
