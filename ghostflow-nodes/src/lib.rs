//! Ready-made nodes for GhostFlow, one cargo feature per family.
//!
//! | feature   | nodes |
//! |-----------|-------|
//! | `control` | [`control::Delay`], [`control::Fail`], [`control::Passthrough`] |
//!
//! More families (HTTP, data, text, files, SQL, messaging, AI) arrive with
//! their own features. [`specs`] lists the spec of every node compiled in.

#[cfg(feature = "control")]
pub mod control;

use ghostflow::{Node, NodeSpec};

/// The specs of every node type compiled into this crate, sorted by type name.
pub fn specs() -> Vec<NodeSpec> {
    let mut specs: Vec<NodeSpec> = Vec::new();
    #[cfg(feature = "control")]
    specs.extend([
        control::Delay::spec(),
        control::Fail::spec(),
        control::Passthrough::spec(),
    ]);
    specs.sort_by(|a, b| a.type_name.cmp(&b.type_name));
    specs
}

#[cfg(test)]
mod tests {
    #[test]
    fn specs_are_complete_and_unique() {
        let specs = super::specs();
        assert!(specs.len() >= 3);
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
