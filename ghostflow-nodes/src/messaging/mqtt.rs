//! MQTT: publish with QoS 0, 1 or 2 on one client per broker per engine.
//!
//! The client is rumqttc's: an [`AsyncClient`] that queues requests and an
//! [`EventLoop`] that a task of ours drives. rumqttc reports what happens
//! as events only, so the task matches them to the publishes waiting for
//! them: publishes enter its request channel in the order they are queued
//! here (queuing and sending happen under one lock), the event loop writes
//! them in that order and reports each with its packet id
//! (`Outgoing::Publish`), and the broker's PUBACK (QoS 1) or PUBCOMP
//! (QoS 2) for that id completes it. On a connection failure every waiting
//! publish fails (retryable) and rumqttc's copies of them are dropped, so
//! nothing is sent later behind the node's back, and the order stays in
//! step. The task connects when there is something to send, not in a loop,
//! and ends when the engine's resources are dropped.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ghostflow::document::DurationText;
use ghostflow::prelude::*;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, QoS,
};
use schemars::{Schema, SchemaGenerator, json_schema};
use serde::{Deserializer, Serializer};
use tokio::sync::{Notify, oneshot};

use super::{PayloadEncoding, lock, positive_duration};

/// Publishes a message to an MQTT broker with QoS 0, 1 or 2, optionally
/// retained.
///
/// The payload comes from the `payload` input, else from the config (with
/// the default `encoding: auto` a string is sent as its text, any other
/// value as JSON). With QoS 1 the node succeeds once the broker sent its
/// PUBACK, with QoS 2 once it sent PUBCOMP; with QoS 0 once the message is
/// written to the connection. A broker that cannot be reached, or does not
/// acknowledge within `timeout`, fails the node (retryable); with a retry
/// policy a QoS 1 message may then arrive twice. Topics with wildcards
/// (`+`, `#`) are refused when the flow loads. Each broker (host, port,
/// client id and credentials) has one client per engine; without a
/// `client_id` the client gets a unique one.
///
/// ```yaml
/// - id: report
///   type: mqtt_publish
///   config:
///     host: 127.0.0.1
///     port: 1883
///     topic: plant/line-3/temperature
///     qos: 1
///     retain: true
///     payload: { celsius: 21.5 }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = MqttPublishInput, output = MqttPublishOutput, category = "messaging")]
#[serde(deny_unknown_fields)]
pub struct MqttPublish {
    /// The broker's host name or address (default `127.0.0.1`).
    #[serde(default = "default_host", deserialize_with = "host")]
    pub host: String,
    /// The broker's port (default 1883). The client speaks plain MQTT 3.1.1
    /// over TCP, without TLS.
    #[serde(default = "default_port")]
    pub port: u16,
    /// A user name and the secret holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "MqttAuth")]
    pub auth: Option<MqttAuth>,
    /// The client id; by default a unique one per engine. Brokers drop a
    /// connection when another client connects with the same id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The topic, such as `plant/line-3/temperature`; no wildcards.
    #[serde(deserialize_with = "topic")]
    pub topic: String,
    /// The payload when the `payload` input is not connected; without
    /// either the message is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// How the payload becomes bytes: `auto`, `json`, `text` or `base64`.
    #[serde(default)]
    pub encoding: PayloadEncoding,
    /// Quality of service: 0 (at most once), 1 (at least once) or 2
    /// (exactly once).
    #[serde(default)]
    pub qos: Qos,
    /// Whether the broker keeps the message for later subscribers.
    #[serde(default)]
    pub retain: bool,
    /// Time to connect (when needed), publish and be acknowledged.
    #[serde(default = "default_timeout", deserialize_with = "positive_duration")]
    pub timeout: DurationText,
}

/// Credentials for an MQTT broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttAuth {
    /// The user name.
    pub username: String,
    /// The name of the secret holding the password.
    pub password_secret: String,
}

/// An MQTT quality of service, written as 0, 1 or 2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Qos {
    /// 0: at most once, no acknowledgement.
    #[default]
    AtMostOnce,
    /// 1: at least once, acknowledged with PUBACK.
    AtLeastOnce,
    /// 2: exactly once, completed with PUBCOMP.
    ExactlyOnce,
}

impl Qos {
    fn level(self) -> u8 {
        match self {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
            Qos::ExactlyOnce => 2,
        }
    }

    fn rumqttc(self) -> QoS {
        match self {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
            Qos::ExactlyOnce => QoS::ExactlyOnce,
        }
    }
}

impl Serialize for Qos {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.level())
    }
}

impl<'de> Deserialize<'de> for Qos {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match u64::deserialize(deserializer)? {
            0 => Ok(Qos::AtMostOnce),
            1 => Ok(Qos::AtLeastOnce),
            2 => Ok(Qos::ExactlyOnce),
            other => Err(serde::de::Error::custom(format!(
                "QoS {other} does not exist; use 0, 1 or 2"
            ))),
        }
    }
}

impl JsonSchema for Qos {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Qos".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "MQTT quality of service: 0 (at most once), 1 (at least once) or 2 (exactly once).",
            "type": "integer",
            "enum": [0, 1, 2]
        })
    }
}

/// Values that complete an [`MqttPublish`] at run time.
#[derive(Ports, Debug)]
pub struct MqttPublishInput {
    /// The payload, in place of the configured one.
    pub payload: Option<serde_json::Value>,
}

/// What an [`MqttPublish`] sent.
#[derive(Ports, Debug)]
pub struct MqttPublishOutput {
    /// The topic published to.
    pub topic: String,
    /// The size of the payload in bytes.
    pub bytes: u64,
    /// The QoS the broker acknowledged (0 when nothing is acknowledged).
    pub qos: u8,
}

impl Run for MqttPublish {
    async fn run(
        &self,
        input: MqttPublishInput,
        ctx: &Context,
    ) -> Result<MqttPublishOutput, NodeError> {
        let place = if input.payload.is_some() {
            "input `payload`"
        } else {
            "config.payload"
        };
        let payload = self
            .encoding
            .encode(input.payload.as_ref().or(self.payload.as_ref()), place)
            .map_err(NodeError::permanent)?;
        if payload.len() > MAX_PAYLOAD {
            return Err(NodeError::permanent(format!(
                "{place}: {} bytes is more than an MQTT message can carry ({MAX_PAYLOAD})",
                payload.len()
            )));
        }
        let password = match &self.auth {
            Some(auth) => Some(ctx.secret(&auth.password_secret)?),
            None => None,
        };
        let broker_name = format!("MQTT broker {}:{}", self.host, self.port);
        let key = BrokerKey {
            host: self.host.clone(),
            port: self.port,
            client_id: self.client_id.clone(),
            username: self.auth.as_ref().map(|a| a.username.clone()),
            password: password.as_ref().map(|p| p.expose().to_owned()),
        };
        let brokers = ctx.shared(MqttBrokers::default);
        let broker = brokers.broker(key);
        let bytes = payload.len() as u64;
        let done = broker.publish(&self.topic, self.qos.rumqttc(), self.retain, payload)?;
        let target = format!("{broker_name} topic `{}`", self.topic);
        match tokio::time::timeout(self.timeout.0, done).await {
            Ok(Ok(Ok(()))) => Ok(MqttPublishOutput {
                topic: self.topic.clone(),
                bytes,
                qos: self.qos.level(),
            }),
            Ok(Ok(Err(failure))) => Err(failure.into_node_error(&target)),
            Ok(Err(_)) => Err(NodeError::retryable(format!(
                "{target}: the MQTT client stopped before the message was sent"
            ))),
            Err(_) => Err(NodeError::retryable(format!(
                "{target}: {} within {} (config.timeout)",
                match self.qos {
                    Qos::AtMostOnce => "not sent",
                    Qos::AtLeastOnce => "no PUBACK from the broker",
                    Qos::ExactlyOnce => "no PUBCOMP from the broker",
                },
                self.timeout
            ))),
        }
    }
}

/// The largest payload of an MQTT message, with room for the topic.
const MAX_PAYLOAD: usize = 256 * 1024 * 1024 - 64 * 1024;

fn default_host() -> String {
    "127.0.0.1".to_owned()
}

fn default_port() -> u16 {
    1883
}

fn default_timeout() -> DurationText {
    DurationText(Duration::from_secs(10))
}

fn host<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let host = String::deserialize(deserializer)?.trim().to_owned();
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err(serde::de::Error::custom(format!(
            "`{host}` is not a host name or address (write the port in `port`)"
        )));
    }
    Ok(host)
}

fn topic<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let topic = String::deserialize(deserializer)?;
    check_topic(&topic).map_err(serde::de::Error::custom)?;
    Ok(topic)
}

/// A topic to publish to: not empty, no wildcard, no NUL, at most 65535
/// bytes.
pub(crate) fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("the topic is empty".to_owned());
    }
    if topic.len() > usize::from(u16::MAX) {
        return Err("the topic is longer than 65535 bytes".to_owned());
    }
    if let Some(wildcard) = topic.chars().find(|c| matches!(c, '+' | '#')) {
        return Err(format!(
            "`{topic}`: the wildcard `{wildcard}` is for subscriptions; publish to one topic"
        ));
    }
    if topic.contains('\0') {
        return Err("the topic contains a NUL character".to_owned());
    }
    Ok(())
}

// ------------------------------------------------------------ the client

/// Which client a node uses: one per broker, client id and credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
struct BrokerKey {
    host: String,
    port: u16,
    client_id: Option<String>,
    username: Option<String>,
    /// The password itself, so that a changed secret gets its own client;
    /// in memory only, never printed.
    password: Option<String>,
}

/// The engine's MQTT clients.
#[derive(Default)]
struct MqttBrokers {
    brokers: Mutex<HashMap<BrokerKey, Arc<Broker>>>,
}

impl fmt::Debug for MqttBrokers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttBrokers")
            .field("brokers", &lock(&self.brokers).len())
            .finish()
    }
}

impl MqttBrokers {
    /// The client for `key`, made (and its task started) on first use.
    fn broker(&self, key: BrokerKey) -> Arc<Broker> {
        lock(&self.brokers)
            .entry(key)
            .or_insert_with_key(|key| Arc::new(Broker::start(key)))
            .clone()
    }
}

/// Why a publish failed, as the event loop saw it.
#[derive(Debug)]
struct Failure {
    message: String,
    retryable: bool,
}

impl Failure {
    fn into_node_error(self, target: &str) -> NodeError {
        let message = format!("{target}: {}", self.message);
        if self.retryable {
            NodeError::retryable(message)
        } else {
            NodeError::permanent(message)
        }
    }
}

/// A publish waiting for the event loop.
struct Waiter {
    qos: QoS,
    done: oneshot::Sender<Result<(), Failure>>,
}

impl Waiter {
    fn finish(self, result: Result<(), Failure>) {
        // The node may have given up (timeout, cancellation): nobody to tell.
        let _ = self.done.send(result);
    }
}

/// The publishes the event loop has not finished, in the three stages it
/// reports them.
#[derive(Default)]
struct Waiters {
    /// In the request channel, in order; each is matched with the next
    /// `Outgoing::Publish` event.
    queued: VecDeque<Waiter>,
    /// One whose packet id was still in use (`Outgoing::AwaitAck`): sent
    /// when that id is acknowledged.
    collided: Option<Waiter>,
    /// Written with QoS 1 or 2, by packet id, until acknowledged.
    inflight: HashMap<u16, Waiter>,
}

impl Waiters {
    fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.collided.is_none() && self.inflight.is_empty()
    }

    fn fail_all(&mut self, message: &str, retryable: bool) {
        let all = self
            .queued
            .drain(..)
            .chain(self.collided.take())
            .chain(self.inflight.drain().map(|(_, w)| w));
        for waiter in all {
            waiter.finish(Err(Failure {
                message: message.to_owned(),
                retryable,
            }));
        }
    }
}

/// One broker's client, shared by the nodes of an engine.
struct Broker {
    client: AsyncClient,
    waiters: Arc<Mutex<Waiters>>,
    wake: Arc<Notify>,
    /// Dropped with the broker (when the engine's resources are dropped):
    /// the event loop task sees it and ends.
    _stop: oneshot::Sender<()>,
}

impl Broker {
    fn start(key: &BrokerKey) -> Self {
        let client_id = key.client_id.clone().unwrap_or_else(|| {
            format!(
                "ghostflow-{}-{:016x}",
                std::process::id(),
                fastrand::u64(..)
            )
        });
        let mut options = MqttOptions::new(client_id, key.host.clone(), key.port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_max_packet_size(64 * 1024, 256 * 1024 * 1024)
            .set_request_channel_capacity(REQUEST_CAPACITY);
        if let (Some(username), Some(password)) = (&key.username, &key.password) {
            options.set_credentials(username.clone(), password.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let mut network = eventloop.network_options();
        network.set_connection_timeout(10);
        eventloop.set_network_options(network);
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(drive(eventloop, waiters.clone(), wake.clone(), stopped));
        Broker {
            client,
            waiters,
            wake,
            _stop: stop,
        }
    }

    /// Queues a publish; the receiver says how it ended.
    fn publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<(), Failure>>, NodeError> {
        let (done, receiver) = oneshot::channel();
        {
            // Under the lock, so that the waiters are in channel order.
            let mut waiters = lock(&self.waiters);
            self.client
                .try_publish(topic, qos, retain, payload)
                .map_err(|_| {
                    NodeError::retryable(format!(
                        "MQTT topic `{topic}`: {REQUEST_CAPACITY} messages are already waiting for the broker"
                    ))
                })?;
            waiters.queued.push_back(Waiter { qos, done });
        }
        self.wake.notify_one();
        Ok(receiver)
    }
}

/// How many publishes may wait for one broker at once.
const REQUEST_CAPACITY: usize = 1024;

/// Drives the event loop while there is work or a connection, and matches
/// its events to the waiting publishes; ends when `stop`'s sender drops.
async fn drive(
    mut eventloop: EventLoop,
    waiters: Arc<Mutex<Waiters>>,
    wake: Arc<Notify>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let idle = eventloop.network.is_none() && lock(&waiters).is_empty();
        if idle {
            // Nothing to send and no connection: wait for a publish rather
            // than reconnect in a loop.
            tokio::select! {
                _ = &mut stop => return,
                () = wake.notified() => continue,
            }
        }
        let event = tokio::select! {
            _ = &mut stop => return,
            event = eventloop.poll() => event,
        };
        let mut waiters = lock(&waiters);
        match event {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let next = waiters
                    .collided
                    .take()
                    .or_else(|| waiters.queued.pop_front());
                if let Some(waiter) = next {
                    if waiter.qos == QoS::AtMostOnce {
                        waiter.finish(Ok(()));
                    } else {
                        waiters.inflight.insert(pkid, waiter);
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::AwaitAck(_))) => {
                waiters.collided = waiters.queued.pop_front();
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if waiters
                    .inflight
                    .get(&ack.pkid)
                    .is_some_and(|w| w.qos == QoS::AtLeastOnce)
                    && let Some(waiter) = waiters.inflight.remove(&ack.pkid)
                {
                    waiter.finish(Ok(()));
                }
            }
            Ok(Event::Incoming(Packet::PubComp(comp))) => {
                if waiters
                    .inflight
                    .get(&comp.pkid)
                    .is_some_and(|w| w.qos == QoS::ExactlyOnce)
                    && let Some(waiter) = waiters.inflight.remove(&comp.pkid)
                {
                    waiter.finish(Ok(()));
                }
            }
            Ok(_) => {}
            Err(error) => {
                let (message, retryable) = describe(&error);
                // Drop rumqttc's copies of what was queued or in flight:
                // their nodes fail now, and a retry sends them again.
                eventloop.clean();
                eventloop.pending.clear();
                eventloop.state.events.clear();
                eventloop.state.collision = None;
                waiters.fail_all(&message, retryable);
            }
        }
    }
}

/// A connection error in words (the broker is named by the caller), and
/// whether it may pass.
fn describe(error: &ConnectionError) -> (String, bool) {
    match error {
        ConnectionError::ConnectionRefused(code) => {
            let (reason, retryable) = match code {
                ConnectReturnCode::BadUserNamePassword => ("bad user name or password", false),
                ConnectReturnCode::NotAuthorized => ("not authorized", false),
                ConnectReturnCode::BadClientId => ("the client id was refused", false),
                ConnectReturnCode::RefusedProtocolVersion => {
                    ("the broker does not speak MQTT 3.1.1", false)
                }
                ConnectReturnCode::ServiceUnavailable | ConnectReturnCode::Success => {
                    ("service unavailable", true)
                }
            };
            (
                format!("the broker refused the connection: {reason}"),
                retryable,
            )
        }
        ConnectionError::Io(e) => (format!("cannot connect: {e}"), true),
        ConnectionError::NetworkTimeout => ("cannot connect: timed out".to_owned(), true),
        other => (format!("the connection failed: {other}"), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_checked() {
        assert!(check_topic("plant/line-3/temperature").is_ok());
        assert_eq!(check_topic("").unwrap_err(), "the topic is empty");
        assert_eq!(
            check_topic("plant/+/temperature").unwrap_err(),
            "`plant/+/temperature`: the wildcard `+` is for subscriptions; publish to one topic"
        );
        assert!(check_topic("plant/#").unwrap_err().contains("`#`"));
    }

    #[test]
    fn qos_is_a_number() {
        assert_eq!(serde_json::to_value(Qos::ExactlyOnce).unwrap(), 2);
        assert_eq!(
            serde_json::from_value::<Qos>(serde_json::json!(1)).unwrap(),
            Qos::AtLeastOnce
        );
        let err = serde_json::from_value::<Qos>(serde_json::json!(3)).unwrap_err();
        assert_eq!(err.to_string(), "QoS 3 does not exist; use 0, 1 or 2");
    }
}
