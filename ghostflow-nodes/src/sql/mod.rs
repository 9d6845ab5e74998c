//! SQL nodes: queries and statements on SQLite, PostgreSQL and MySQL/MariaDB.

use ghostflow::Registry;

/// Registers the sql nodes.
pub(crate) fn register(registry: &mut Registry) {
    let _ = registry;
}
