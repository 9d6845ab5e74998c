//! File nodes: read, write and list files under a configured root directory.

use ghostflow::Registry;

/// Registers the file nodes.
pub(crate) fn register(registry: &mut Registry) {
    let _ = registry;
}
