//! Email nodes: send messages over SMTP.

use ghostflow::Registry;

/// Registers the email nodes.
pub(crate) fn register(registry: &mut Registry) {
    let _ = registry;
}
