//! Messaging nodes: NATS, Redis, MQTT, and Slack and Discord webhooks.

use ghostflow::Registry;

/// Registers the messaging nodes.
pub(crate) fn register(registry: &mut Registry) {
    let _ = registry;
}
