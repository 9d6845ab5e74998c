//! The messaging nodes against real peers on loopback: NATS with JetStream
//! (4222), Redis (6379), Mosquitto (1883), and a local axum server that
//! answers as Slack's and Discord's webhooks do. Every test works under
//! its own subject, key prefix, topic or stream, so runs never collide.
#![cfg(feature = "messaging")]

mod common;
use common::{load, load_error};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use ghostflow::document::Document;
use ghostflow::{Engine, Error, Flow, Inputs, MapSecrets, NodeFailure, NodeStatus, Outcome};
use ghostflow_nodes::messaging::{MqttPublish, NatsPublish, Qos, Redis, RedisCommand};
use serde_json::{Value, json};

// ------------------------------------------------------------------ helpers

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        fastrand_suffix()
    )
}

fn fastrand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// A one-node flow: a flow input `value` (any JSON) connected to `input`
/// when given, and the node's `outputs` as flow outputs.
fn one_node(node_type: &str, config: &Value, input: Option<&str>, outputs: &[&str]) -> Flow {
    let mut yaml = String::from("version: 1\nname: one\n");
    if input.is_some() {
        yaml.push_str("inputs:\n  value: {}\n");
    }
    yaml.push_str(&format!(
        "nodes:\n  - id: node\n    type: {node_type}\n    config: {config}\n"
    ));
    if let Some(port) = input {
        yaml.push_str(&format!(
            "edges:\n  - {{ from: input.value, to: node.{port} }}\n"
        ));
    }
    if !outputs.is_empty() {
        yaml.push_str("outputs:\n");
    }
    for output in outputs {
        yaml.push_str(&format!("  {output}: node.{output}\n"));
    }
    load(&yaml)
}

fn engine() -> Engine {
    Engine::builder()
        .secrets(
            MapSecrets::new()
                .with("REDIS_URL", "redis://127.0.0.1:6379/0")
                .with("BAD_REDIS_URL", "http://not-redis"),
        )
        .build()
}

async fn run(engine: &Engine, flow: &Flow, value: Option<Value>) -> Result<Outcome, Error> {
    let inputs = match value {
        Some(value) => Inputs::new().set("value", value),
        None => Inputs::new(),
    };
    engine.run(flow, inputs).await
}

fn out(outcome: &Outcome, name: &str) -> Value {
    outcome.output::<Value>(name).unwrap()
}

/// The node error of a failed run.
fn node_error(result: Result<Outcome, Error>) -> ghostflow::NodeError {
    match result {
        Err(Error::NodeFailed { error, .. }) => error,
        Err(other) => panic!("expected a node failure, got {other}"),
        Ok(outcome) => panic!(
            "expected a node failure, got outputs {:?}",
            outcome.outputs_json()
        ),
    }
}

async fn nats() -> async_nats::Client {
    async_nats::connect("127.0.0.1:4222").await.unwrap_or_else(|e| {
        panic!("NATS is not reachable on 127.0.0.1:4222 ({e}); start it with `bash .ci/services.sh`")
    })
}

// --------------------------------------------------------------------- NATS

#[tokio::test]
async fn nats_publish_delivers_the_payload_and_headers() {
    let client = nats().await;
    let subject = unique("gf.test.publish.");
    let mut subscriber = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();
    let engine = engine();

    // A JSON payload from the input, headers from the config and input.
    let flow = load(&format!(
        r#"
version: 1
name: publish
inputs:
  payload: {{}}
  headers: {{}}
nodes:
  - id: node
    type: nats_publish
    config: {{ subject: "{subject}", headers: {{ X-Source: ghostflow, X-Trace: config }} }}
edges:
  - {{ from: input.payload, to: node.payload }}
  - {{ from: input.headers, to: node.headers }}
outputs:
  subject: node.subject
  bytes: node.bytes
"#
    ));
    let outcome = engine
        .run(
            &flow,
            Inputs::new()
                .set("payload", json!({"order": 1042, "items": ["a", "b"]}))
                .set("headers", json!({"X-Trace": "input"})),
        )
        .await
        .unwrap();
    assert_eq!(out(&outcome, "subject"), json!(subject));
    let message = tokio::time::timeout(Duration::from_secs(5), subscriber.next())
        .await
        .unwrap()
        .unwrap();
    let payload: Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(payload, json!({"order": 1042, "items": ["a", "b"]}));
    assert_eq!(out(&outcome, "bytes"), json!(message.payload.len() as u64));
    let headers = message.headers.unwrap();
    assert_eq!(headers.get("X-Source").unwrap().as_str(), "ghostflow");
    assert_eq!(headers.get("X-Trace").unwrap().as_str(), "input");

    // A text payload from the config, sent as its text, without headers.
    let flow = one_node(
        "nats_publish",
        &json!({"subject": subject, "payload": "plain words"}),
        None,
        &["subject"],
    );
    engine.run(&flow, Inputs::new()).await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), subscriber.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&message.payload[..], b"plain words");
    assert!(message.headers.is_none());

    // The typed builder, and back through a document.
    let node: NatsPublish = serde_json::from_value(json!({
        "subject": subject,
        "payload": "typed",
        "encoding": "json"
    }))
    .unwrap();
    let mut b = Flow::builder("typed");
    let publish = b.add("node", node);
    b.output("bytes", publish.out().bytes);
    let flow = b.build().unwrap();
    let yaml = Document::from_flow(&flow).unwrap().to_yaml();
    for flow in [flow, load(&yaml)] {
        let outcome = engine.run(&flow, Inputs::new()).await.unwrap();
        assert_eq!(outcome.output::<u64>("bytes").unwrap(), 7);
        let message = tokio::time::timeout(Duration::from_secs(5), subscriber.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&message.payload[..], br#""typed""#);
    }
}

#[tokio::test]
async fn nats_request_gets_the_reply_with_its_headers() {
    let client = nats().await;
    let subject = unique("gf.test.request.");
    let mut requests = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let Some(reply) = request.reply else { continue };
            let asked: Value = serde_json::from_slice(&request.payload).unwrap_or(Value::Null);
            let trace = request
                .headers
                .as_ref()
                .and_then(|h| h.get("X-Trace").map(|v| v.as_str().to_owned()));
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("X-Answered-By", "test");
            let body = if asked["plain"] == json!(true) {
                "just text".to_owned()
            } else {
                json!({"asked": asked, "trace": trace}).to_string()
            };
            responder
                .publish_with_headers(reply, headers, body.into())
                .await
                .unwrap();
        }
    });
    let engine = engine();
    let flow = one_node(
        "nats_request",
        &json!({"subject": subject, "headers": {"X-Trace": "t-1"}, "timeout": "5s"}),
        Some("payload"),
        &["reply", "headers"],
    );
    let outcome = run(&engine, &flow, Some(json!({"sku": "A-1"})))
        .await
        .unwrap();
    assert_eq!(
        out(&outcome, "reply"),
        json!({"asked": {"sku": "A-1"}, "trace": "t-1"})
    );
    assert_eq!(out(&outcome, "headers"), json!({"X-Answered-By": "test"}));
    // A reply that is not JSON is text.
    let outcome = run(&engine, &flow, Some(json!({"plain": true})))
        .await
        .unwrap();
    assert_eq!(out(&outcome, "reply"), json!("just text"));
    // ... unless JSON is insisted on.
    let strict = one_node(
        "nats_request",
        &json!({"subject": subject, "reply": "json"}),
        Some("payload"),
        &["reply"],
    );
    let error = node_error(run(&engine, &strict, Some(json!({"plain": true}))).await);
    assert!(
        error
            .message()
            .contains("the reply is not valid JSON (reply: json)"),
        "{error}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn nats_request_without_responders_or_reply_fails_clearly() {
    let client = nats().await;
    let engine = engine();
    let lonely = unique("gf.test.nobody.");
    let flow = one_node(
        "nats_request",
        &json!({"subject": lonely, "payload": "anyone?"}),
        None,
        &["reply"],
    );
    let error = node_error(run(&engine, &flow, None).await);
    assert_eq!(
        error.message(),
        format!(
            "NATS nats://127.0.0.1:4222 subject `{lonely}`: no responders: nothing subscribes to this subject"
        )
    );
    assert!(error.is_retryable());

    // A subscriber that never answers.
    let silent = unique("gf.test.silent.");
    let _subscriber = client.subscribe(silent.clone()).await.unwrap();
    client.flush().await.unwrap();
    let flow = one_node(
        "nats_request",
        &json!({"subject": silent, "timeout": "300ms"}),
        None,
        &["reply"],
    );
    let error = node_error(run(&engine, &flow, None).await);
    assert_eq!(
        error.message(),
        format!(
            "NATS nats://127.0.0.1:4222 subject `{silent}`: no reply within 300ms (config.timeout)"
        )
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn nats_jetstream_publish_is_acknowledged_by_the_stream() {
    let client = nats().await;
    let js = async_nats::jetstream::new(client.clone());
    let name = unique("GF_TEST_");
    let subject = format!("{}.events", name.to_lowercase());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .unwrap();
    let engine = engine();
    let flow = one_node(
        "nats_publish",
        &json!({"subject": subject, "jetstream": true, "headers": {"Nats-Msg-Id": "m-1"}}),
        Some("payload"),
        &["stream", "sequence", "duplicate"],
    );
    let first = run(&engine, &flow, Some(json!({"n": 1}))).await;
    let again = run(&engine, &flow, Some(json!({"n": 1}))).await;
    let other = one_node(
        "nats_publish",
        &json!({"subject": subject, "jetstream": true}),
        Some("payload"),
        &["stream", "sequence", "duplicate"],
    );
    let second = run(&engine, &other, Some(json!({"n": 2}))).await;
    let stored = js
        .get_stream(&name)
        .await
        .unwrap()
        .get_raw_message(1)
        .await
        .map(|m| m.payload);
    js.delete_stream(&name).await.unwrap();

    let first = first.unwrap();
    assert_eq!(out(&first, "stream"), json!(name));
    assert_eq!(out(&first, "sequence"), json!(1));
    assert_eq!(out(&first, "duplicate"), json!(false));
    // The same message id again: the stream keeps one copy.
    let again = again.unwrap();
    assert_eq!(out(&again, "sequence"), json!(1));
    assert_eq!(out(&again, "duplicate"), json!(true));
    assert_eq!(out(&second.unwrap(), "sequence"), json!(2));
    assert_eq!(&stored.unwrap()[..], br#"{"n":1}"#);

    // No stream takes the subject: a permanent failure.
    let nowhere = unique("gf.test.nostream.");
    let flow = one_node(
        "nats_publish",
        &json!({"subject": nowhere, "jetstream": true, "timeout": "3s"}),
        None,
        &["stream"],
    );
    let error = node_error(run(&engine, &flow, None).await);
    assert_eq!(
        error.message(),
        format!(
            "NATS nats://127.0.0.1:4222 subject `{nowhere}`: no JetStream stream takes this subject"
        )
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn nats_server_down_is_a_retryable_failure() {
    let engine = engine();
    for node_type in ["nats_publish", "nats_request"] {
        let flow = one_node(
            node_type,
            &json!({"url": "nats://127.0.0.1:9", "subject": "a.b", "timeout": "3s"}),
            None,
            &[],
        );
        let error = node_error(run(&engine, &flow, None).await);
        assert!(
            error
                .message()
                .starts_with("cannot connect to NATS at nats://127.0.0.1:9"),
            "{error}"
        );
        assert!(error.is_retryable(), "{error}");
    }
}

#[test]
fn nats_bad_configs_fail_when_the_flow_loads() {
    for (node_type, config, expected) in [
        (
            "nats_publish",
            r#"{ subject: "orders.*" }"#,
            "nodes[0].config.subject: `orders.*`: the wildcard `*` cannot be published to; name one subject",
        ),
        (
            "nats_publish",
            "{ }",
            "nodes[0].config: missing field `subject`",
        ),
        (
            "nats_publish",
            r#"{ subject: a, jetstream: "yes" }"#,
            "nodes[0].config.jetstream:",
        ),
        (
            "nats_request",
            r#"{ subject: a, url: "http://x" }"#,
            "nodes[0].config.url:",
        ),
        (
            "nats_request",
            r#"{ subject: a, timeout: never }"#,
            "nodes[0].config.timeout:",
        ),
        (
            "nats_request",
            r#"{ subject: a, reply: xml }"#,
            "nodes[0].config.reply:",
        ),
    ] {
        let err = load_error(&format!(
            "version: 1\nname: bad\nnodes:\n  - id: n\n    type: {node_type}\n    config: {config}\n"
        ));
        assert!(
            err.contains(expected),
            "{config}: `{err}` lacks `{expected}`"
        );
    }
}

#[tokio::test]
async fn on_error_skip_skips_the_node_and_what_depends_on_it() {
    let subject = unique("gf.test.skip.");
    let flow = load(&format!(
        r#"
version: 1
name: skip
nodes:
  - id: ask
    type: nats_request
    config: {{ subject: "{subject}", timeout: 2s }}
    on_error: skip
  - id: forward
    type: nats_publish
    config: {{ subject: "{subject}.forwarded" }}
  - id: independent
    type: nats_publish
    config: {{ subject: "{subject}.independent", payload: still runs }}
edges:
  - {{ from: ask.reply, to: forward.payload }}
outputs:
  sent: independent.subject
"#
    ));
    let outcome = run(&engine(), &flow, None).await.unwrap();
    assert_eq!(outcome.node("ask").unwrap().status, NodeStatus::Skipped);
    assert_eq!(outcome.node("forward").unwrap().status, NodeStatus::Skipped);
    assert_eq!(
        outcome.node("independent").unwrap().status,
        NodeStatus::Succeeded
    );
    assert_eq!(
        out(&outcome, "sent"),
        json!(format!("{subject}.independent"))
    );
}

// -------------------------------------------------------------------- Redis

/// Deletes every key under `prefix` when dropped.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open("redis://127.0.0.1:6379")
            && let Ok(mut connection) = client.get_connection()
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.0))
                .query(&mut connection)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query(&mut connection);
            }
        }
    }
}

fn redis_peer() {
    if std::net::TcpStream::connect("127.0.0.1:6379").is_err() {
        panic!("Redis is not reachable on 127.0.0.1:6379; start it with `bash .ci/services.sh`");
    }
}

/// Runs one Redis command (with `value` on the input) and returns its
/// result.
async fn redis(
    engine: &Engine,
    command: Value,
    values: &str,
    value: Option<Value>,
) -> Result<Value, Error> {
    let flow = one_node(
        "redis",
        &json!({"url_secret": "REDIS_URL", "command": command, "values": values}),
        value.as_ref().map(|_| "value"),
        &["result"],
    );
    let outcome = run(engine, &flow, value).await?;
    Ok(out(&outcome, "result"))
}

#[tokio::test]
async fn redis_runs_every_command() {
    redis_peer();
    let prefix = unique("gf:test:");
    let _cleanup = Cleanup(prefix.clone());
    let engine = engine();
    let k = |name: &str| format!("{prefix}:{name}");
    let r = |command: Value, values: &'static str, value: Option<Value>| {
        let engine = engine.clone();
        async move { redis(&engine, command, values, value).await.unwrap() }
    };

    // Strings: JSON values round-trip, text stays text.
    assert_eq!(
        r(
            json!({"set": {"key": k("doc")}}),
            "json",
            Some(json!({"a": [1, "x"]}))
        )
        .await,
        json!(true)
    );
    assert_eq!(
        r(json!({"get": {"key": k("doc")}}), "json", None).await,
        json!({"a": [1, "x"]})
    );
    assert_eq!(
        r(json!({"get": {"key": k("doc")}}), "text", None).await,
        json!(r#"{"a":[1,"x"]}"#)
    );
    assert_eq!(
        r(
            json!({"set": {"key": k("name"), "value": "Ada"}}),
            "text",
            None
        )
        .await,
        json!(true)
    );
    assert_eq!(
        r(json!({"get": {"key": k("name")}}), "text", None).await,
        json!("Ada")
    );
    assert_eq!(
        r(json!({"get": {"key": k("missing")}}), "json", None).await,
        json!(null)
    );
    // NX and XX.
    assert_eq!(
        r(
            json!({"set": {"key": k("name"), "value": "Bob", "condition": "nx"}}),
            "text",
            None
        )
        .await,
        json!(false)
    );
    assert_eq!(
        r(
            json!({"set": {"key": k("fresh"), "value": "Cy", "condition": "xx"}}),
            "text",
            None
        )
        .await,
        json!(false)
    );
    assert_eq!(
        r(
            json!({"set": {"key": k("fresh"), "value": "Cy", "condition": "nx", "ttl": "1h"}}),
            "text",
            None
        )
        .await,
        json!(true)
    );
    // The TTL is on the key.
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut direct = client.get_multiplexed_async_connection().await.unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(k("fresh"))
        .query_async(&mut direct)
        .await
        .unwrap();
    assert!(pttl > 3_500_000 && pttl <= 3_600_000, "{pttl}");
    assert_eq!(
        r(
            json!({"expire": {"key": k("name"), "ttl": "10m"}}),
            "text",
            None
        )
        .await,
        json!(true)
    );
    assert_eq!(
        r(
            json!({"expire": {"key": k("missing"), "ttl": "10m"}}),
            "text",
            None
        )
        .await,
        json!(false)
    );
    // Counters.
    assert_eq!(
        r(json!({"incr": {"key": k("n")}}), "text", None).await,
        json!(1)
    );
    assert_eq!(
        r(json!({"incrby": {"key": k("n"), "by": 41}}), "text", None).await,
        json!(42)
    );
    assert_eq!(
        r(json!({"decr": {"key": k("n")}}), "text", None).await,
        json!(41)
    );
    assert_eq!(
        r(
            json!({"exists": {"keys": [k("n"), k("name"), k("missing")]}}),
            "text",
            None
        )
        .await,
        json!(2)
    );
    // Lists: the input's list is the elements.
    assert_eq!(
        r(
            json!({"rpush": {"key": k("list")}}),
            "json",
            Some(json!([1, {"b": 2}, "three"]))
        )
        .await,
        json!(3)
    );
    assert_eq!(
        r(
            json!({"lpush": {"key": k("list"), "values": [0]}}),
            "json",
            None
        )
        .await,
        json!(4)
    );
    assert_eq!(
        r(json!({"lrange": {"key": k("list")}}), "json", None).await,
        json!([0, 1, {"b": 2}, "three"])
    );
    assert_eq!(
        r(
            json!({"lrange": {"key": k("list"), "start": 1, "stop": 1}}),
            "json",
            None
        )
        .await,
        json!([1])
    );
    assert_eq!(
        r(json!({"lpop": {"key": k("list")}}), "json", None).await,
        json!(0)
    );
    assert_eq!(
        r(json!({"rpop": {"key": k("list")}}), "json", None).await,
        json!("three")
    );
    assert_eq!(
        r(
            json!({"lpop": {"key": k("list"), "count": 5}}),
            "json",
            None
        )
        .await,
        json!([1, {"b": 2}])
    );
    assert_eq!(
        r(json!({"rpop": {"key": k("list")}}), "json", None).await,
        json!(null)
    );
    // Hashes.
    assert_eq!(
        r(
            json!({"hset": {"key": k("hash")}}),
            "json",
            Some(json!({"name": "Ada", "age": 36}))
        )
        .await,
        json!(2)
    );
    assert_eq!(
        r(
            json!({"hset": {"key": k("hash"), "fields": {"age": 37, "lang": "en"}}}),
            "json",
            None
        )
        .await,
        json!(1)
    );
    assert_eq!(
        r(
            json!({"hget": {"key": k("hash"), "field": "age"}}),
            "json",
            None
        )
        .await,
        json!(37)
    );
    assert_eq!(
        r(
            json!({"hget": {"key": k("hash"), "field": "nope"}}),
            "json",
            None
        )
        .await,
        json!(null)
    );
    assert_eq!(
        r(json!({"hgetall": {"key": k("hash")}}), "json", None).await,
        json!({"name": "Ada", "age": 37, "lang": "en"})
    );
    assert_eq!(
        r(
            json!({"hdel": {"key": k("hash"), "fields": ["lang", "nope"]}}),
            "json",
            None
        )
        .await,
        json!(1)
    );
    // Sets.
    assert_eq!(
        r(
            json!({"sadd": {"key": k("set")}}),
            "text",
            Some(json!(["b", "a", "b"]))
        )
        .await,
        json!(2)
    );
    assert_eq!(
        r(
            json!({"sadd": {"key": k("set"), "members": ["c"]}}),
            "text",
            None
        )
        .await,
        json!(1)
    );
    assert_eq!(
        r(json!({"smembers": {"key": k("set")}}), "text", None).await,
        json!(["a", "b", "c"])
    );
    // Publish reaches a subscriber.
    let channel = k("channel");
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    assert_eq!(
        r(
            json!({"publish": {"channel": channel}}),
            "json",
            Some(json!({"event": "hi"}))
        )
        .await,
        json!(1)
    );
    let message = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        message.get_payload::<String>().unwrap(),
        r#"{"event":"hi"}"#
    );
    // Deleting.
    assert_eq!(
        r(
            json!({"del": {"keys": [k("doc"), k("name"), k("missing")]}}),
            "text",
            None
        )
        .await,
        json!(2)
    );

    // The typed builder, and back through a document.
    let node = Redis {
        url: Some("redis://127.0.0.1:6379".into()),
        url_secret: None,
        command: RedisCommand::Get { key: k("n") },
        values: Default::default(),
        timeout: ghostflow::document::DurationText(Duration::from_secs(5)),
    };
    let mut b = Flow::builder("typed");
    let get = b.add("get", node);
    b.output("result", get.out().result);
    let flow = b.build().unwrap();
    let yaml = Document::from_flow(&flow).unwrap().to_yaml();
    for flow in [flow, load(&yaml)] {
        let outcome = engine.run(&flow, Inputs::new()).await.unwrap();
        assert_eq!(out(&outcome, "result"), json!("41"));
    }
}

#[tokio::test]
async fn redis_server_errors_are_permanent_with_the_servers_words() {
    redis_peer();
    let prefix = unique("gf:test:");
    let _cleanup = Cleanup(prefix.clone());
    let engine = engine();
    let key = format!("{prefix}:text");
    redis(
        &engine,
        json!({"set": {"key": key, "value": "x"}}),
        "text",
        None,
    )
    .await
    .unwrap();
    let error = node_error(
        redis(
            &engine,
            json!({"lpush": {"key": key, "values": ["y"]}}),
            "text",
            None,
        )
        .await
        .map(|_| unreachable!()),
    );
    assert_eq!(
        error.message(),
        format!(
            "Redis ***: LPUSH {key}: WRONGTYPE Operation against a key holding the wrong kind of value"
        )
    );
    assert!(!error.is_retryable());
    // A stored text that is not JSON, read as JSON.
    let error = node_error(
        redis(&engine, json!({"get": {"key": key}}), "json", None)
            .await
            .map(|_| unreachable!()),
    );
    assert!(
        error
            .message()
            .ends_with("the stored value `x` is not JSON (expected value at line 1 column 1); read it with `values: text`"),
        "{error}"
    );
    // A value of the wrong shape on the input.
    let error = node_error(
        redis(
            &engine,
            json!({"hset": {"key": key}}),
            "text",
            Some(json!([1])),
        )
        .await
        .map(|_| unreachable!()),
    );
    assert_eq!(
        error.message(),
        "input `value`: HSET takes an object of fields, got an array"
    );
    // A secret that is not a Redis URL.
    let flow = one_node(
        "redis",
        &json!({"url_secret": "BAD_REDIS_URL", "command": {"get": {"key": key}}}),
        None,
        &["result"],
    );
    let error = node_error(run(&engine, &flow, None).await);
    assert!(
        error
            .message()
            .starts_with("config.url_secret: secret `BAD_REDIS_URL` is not a Redis URL"),
        "{error}"
    );
}

#[tokio::test]
async fn redis_server_down_is_a_retryable_failure() {
    let flow = one_node(
        "redis",
        &json!({"url": "redis://127.0.0.1:9", "command": {"get": {"key": "k"}}, "timeout": "2s"}),
        None,
        &["result"],
    );
    let error = node_error(run(&engine(), &flow, None).await);
    assert!(
        error
            .message()
            .starts_with("cannot connect to Redis at redis://127.0.0.1:9"),
        "{error}"
    );
    assert!(error.is_retryable());
}

#[test]
fn redis_bad_configs_fail_when_the_flow_loads() {
    for (config, expected) in [
        ("{ }", "nodes[0].config: missing field `command`"),
        (
            r#"{ command: { get: { key: "" } } }"#,
            "nodes[0].config.command.get.key: the key is empty",
        ),
        (
            r#"{ command: { gett: { key: a } } }"#,
            "nodes[0].config.command",
        ),
        (
            r#"{ command: { set: { key: a, ttl: soon } } }"#,
            "nodes[0].config.command.set.ttl:",
        ),
        (
            r#"{ command: { set: { key: a, condition: maybe } } }"#,
            "nodes[0].config.command.set.condition:",
        ),
        (
            r#"{ command: { del: { keys: [] } } }"#,
            "nodes[0].config.command.del.keys: give at least one key",
        ),
        (
            r#"{ command: { incrby: { key: a, by: lots } } }"#,
            "nodes[0].config.command.incrby.by:",
        ),
        (
            r#"{ url: "http://x", command: { get: { key: a } } }"#,
            "nodes[0].config.url: `http://x` is not a Redis URL",
        ),
        // The client has no TLS: refused now, not when the node connects.
        (
            r#"{ url: "rediss://:secret@127.0.0.1:6380", command: { get: { key: a } } }"#,
            "nodes[0].config.url: `rediss://:***@127.0.0.1:6380` is not a Redis URL: TLS (rediss://) is not supported; write it as redis://",
        ),
        // The driver's reason is kept.
        (
            r#"{ url: "redis://127.0.0.1:6379/first", command: { get: { key: a } } }"#,
            "nodes[0].config.url: `redis://127.0.0.1:6379/first` is not a Redis URL: Invalid database number; write it as redis://",
        ),
    ] {
        let err = load_error(&format!(
            "version: 1\nname: bad\nnodes:\n  - id: n\n    type: redis\n    config: {config}\n"
        ));
        assert!(
            err.contains(expected),
            "{config}: `{err}` lacks `{expected}`"
        );
    }
}

// --------------------------------------------------------------------- MQTT

/// A subscriber on the test broker, with the publishes it receives.
async fn mqtt_subscriber(
    topic: &str,
) -> (
    rumqttc::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
) {
    if std::net::TcpStream::connect("127.0.0.1:1883").is_err() {
        panic!(
            "Mosquitto is not reachable on 127.0.0.1:1883; start it with `bash .ci/services.sh`"
        );
    }
    let options = rumqttc::MqttOptions::new(unique("gf-test-sub-"), "127.0.0.1", 1883);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(event) = eventloop.poll().await {
            match event {
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) => {
                    // The test may have stopped listening; the loop ends
                    // when the subscriber disconnects.
                    let _ = tx.send(publish);
                }
                _ => {}
            }
        }
    });
    client
        .subscribe(topic, rumqttc::QoS::ExactlyOnce)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), subscribed)
        .await
        .unwrap()
        .unwrap();
    (client, rx)
}

async fn received(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
) -> rumqttc::Publish {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no message within 5 s")
        .unwrap()
}

#[tokio::test]
async fn mqtt_publish_is_delivered_with_its_qos_and_acknowledged() {
    let topic = format!("ghostflow/test/{}", unique("t"));
    let (subscriber, mut rx) = mqtt_subscriber(&topic).await;
    let engine = engine();
    for qos in [0u8, 1, 2] {
        let flow = one_node(
            "mqtt_publish",
            &json!({"topic": topic, "qos": qos}),
            Some("payload"),
            &["topic", "bytes", "qos"],
        );
        let outcome = run(&engine, &flow, Some(json!({"qos": qos})))
            .await
            .unwrap();
        assert_eq!(out(&outcome, "qos"), json!(qos));
        assert_eq!(out(&outcome, "topic"), json!(topic));
        let message = received(&mut rx).await;
        assert_eq!(message.topic, topic);
        assert_eq!(message.qos as u8, qos);
        assert!(!message.retain);
        assert_eq!(
            serde_json::from_slice::<Value>(&message.payload).unwrap(),
            json!({"qos": qos})
        );
        assert_eq!(out(&outcome, "bytes"), json!(message.payload.len()));
    }
    // Many at once on the one client: each is matched with its own ack.
    let flow = one_node(
        "mqtt_publish",
        &json!({"topic": topic, "qos": 1}),
        Some("payload"),
        &["bytes"],
    );
    let runs = (0..20).map(|i| {
        let engine = engine.clone();
        let flow = flow.clone();
        async move { run(&engine, &flow, Some(json!(format!("m{i}")))).await }
    });
    for result in futures::future::join_all(runs).await {
        result.unwrap();
    }
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..20 {
        seen.push(String::from_utf8(received(&mut rx).await.payload.to_vec()).unwrap());
    }
    seen.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(seen, expected);
    subscriber.disconnect().await.unwrap();

    // A retained message reaches a subscriber that comes later, flagged.
    let flow = one_node(
        "mqtt_publish",
        &json!({"topic": topic, "qos": 2, "retain": true, "payload": "kept"}),
        None,
        &["qos"],
    );
    run(&engine, &flow, None).await.unwrap();
    let (late, mut rx) = mqtt_subscriber(&topic).await;
    let message = received(&mut rx).await;
    assert!(message.retain);
    assert_eq!(&message.payload[..], b"kept");
    assert_eq!(message.qos, rumqttc::QoS::ExactlyOnce);
    // Clear it: an empty retained message.
    let clear = one_node(
        "mqtt_publish",
        &json!({"topic": topic, "qos": 1, "retain": true}),
        None,
        &["qos"],
    );
    run(&engine, &clear, None).await.unwrap();
    late.disconnect().await.unwrap();
}

#[tokio::test]
async fn mqtt_broker_down_fails_every_qos_and_the_typed_node_works() {
    let engine = engine();
    for qos in [0, 1, 2] {
        let flow = one_node(
            "mqtt_publish",
            &json!({"port": 9, "topic": "a/b", "qos": qos, "payload": "x"}),
            None,
            &["qos"],
        );
        let error = node_error(run(&engine, &flow, None).await);
        assert!(
            error.message().starts_with(
                "MQTT broker 127.0.0.1:9 topic `a/b`: cannot connect: Connection refused"
            ),
            "{error}"
        );
        assert!(error.is_retryable());
    }
    // The typed builder, against the real broker.
    let topic = format!("ghostflow/test/{}", unique("typed"));
    let (_subscriber, mut rx) = mqtt_subscriber(&topic).await;
    let node: MqttPublish =
        serde_json::from_value(json!({"topic": topic, "payload": [1, 2]})).unwrap();
    assert_eq!(node.qos, Qos::AtMostOnce);
    let mut b = Flow::builder("typed");
    let publish = b.add("publish", node);
    b.output("bytes", publish.out().bytes);
    let flow = b.build().unwrap();
    let yaml = Document::from_flow(&flow).unwrap().to_yaml();
    for flow in [flow, load(&yaml)] {
        engine.run(&flow, Inputs::new()).await.unwrap();
        assert_eq!(&received(&mut rx).await.payload[..], b"[1,2]");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_mqtt_client_task_ends_with_the_engine() {
    let topic = format!("ghostflow/test/{}", unique("drop"));
    if std::net::TcpStream::connect("127.0.0.1:1883").is_err() {
        panic!(
            "Mosquitto is not reachable on 127.0.0.1:1883; start it with `bash .ci/services.sh`"
        );
    }
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let engine = engine();
    let flow = one_node(
        "mqtt_publish",
        &json!({"topic": topic, "qos": 1, "payload": "x"}),
        None,
        &["qos"],
    );
    run(&engine, &flow, None).await.unwrap();
    assert!(metrics.num_alive_tasks() > before, "the client's task runs");
    drop(flow);
    drop(engine);
    let mut ended = false;
    for _ in 0..200 {
        if metrics.num_alive_tasks() == before {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        ended,
        "{} tasks still alive",
        metrics.num_alive_tasks() - before
    );
}

#[test]
fn mqtt_bad_configs_fail_when_the_flow_loads() {
    for (config, expected) in [
        (
            r#"{ topic: "plant/+/temp" }"#,
            "nodes[0].config.topic: `plant/+/temp`: the wildcard `+` is for subscriptions; publish to one topic",
        ),
        (r#"{ topic: a, qos: 3 }"#, "nodes[0].config.qos:"),
        (r#"{ topic: a, port: 70000 }"#, "nodes[0].config.port:"),
        (r#"{ qos: 1 }"#, "nodes[0].config: missing field `topic`"),
        (
            r#"{ topic: a, auth: { username: u } }"#,
            "nodes[0].config.auth: missing field `password_secret`",
        ),
    ] {
        let err = load_error(&format!(
            "version: 1\nname: bad\nnodes:\n  - id: n\n    type: mqtt_publish\n    config: {config}\n"
        ));
        assert!(
            err.contains(expected),
            "{config}: `{err}` lacks `{expected}`"
        );
    }
}

// --------------------------------------------------------- Slack, Discord

/// One request a webhook got: path, query, content type, JSON body.
type Request = (String, Option<String>, String, Value);

/// Every request so far.
type Seen = Arc<Mutex<Vec<Request>>>;

/// A local server answering as Slack's and Discord's webhooks do.
struct Hooks {
    addr: SocketAddr,
    seen: Seen,
}

impl Hooks {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

fn record(
    seen: &Seen,
    path: String,
    query: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Value {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    seen.lock()
        .unwrap()
        .push((path, query, content_type, body.clone()));
    body
}

async fn slack(
    State(seen): State<Seen>,
    Path(case): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = record(&seen, format!("/slack/{case}"), None, &headers, &body);
    let text = |status: StatusCode, words: &'static str| {
        (status, [(header::CONTENT_TYPE, "text/plain")], words).into_response()
    };
    match case.as_str() {
        "ok" if body.get("text").is_some() || body.get("blocks").is_some() => {
            text(StatusCode::OK, "ok")
        }
        "ok" => text(StatusCode::BAD_REQUEST, "no_text"),
        "invalid_payload" => text(StatusCode::BAD_REQUEST, "invalid_payload"),
        "action_prohibited" => text(StatusCode::FORBIDDEN, "action_prohibited"),
        "channel_not_found" => text(StatusCode::NOT_FOUND, "channel_not_found"),
        "channel_is_archived" => text(StatusCode::GONE, "channel_is_archived"),
        "rate_limited" => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "7")],
            "rate_limited",
        )
            .into_response(),
        _ => text(StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
    }
}

async fn discord(
    State(seen): State<Seen>,
    Path(case): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = record(
        &seen,
        format!("/discord/{case}"),
        query.clone(),
        &headers,
        &body,
    );
    let json = |status: StatusCode, value: Value| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response()
    };
    match case.as_str() {
        "ok" if query.as_deref().unwrap_or_default().contains("wait=true") => json(
            StatusCode::OK,
            json!({
                "id": "1122334455667788",
                "type": 0,
                "content": body["content"],
                "channel_id": "99",
                "author": {"id": "42", "username": body["username"], "bot": true},
                "embeds": body.get("embeds").cloned().unwrap_or(json!([])),
            }),
        ),
        "ok" => StatusCode::NO_CONTENT.into_response(),
        "limited" => json(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"message": "You are being rate limited.", "retry_after": 1.5, "global": false}),
        ),
        "empty" => json(
            StatusCode::BAD_REQUEST,
            json!({"message": "Cannot send an empty message", "code": 50006}),
        ),
        "unknown" => json(
            StatusCode::NOT_FOUND,
            json!({"message": "Unknown Webhook", "code": 10015}),
        ),
        _ => json(StatusCode::BAD_GATEWAY, json!({"message": "upstream"})),
    }
}

async fn hooks() -> Hooks {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/slack/{case}", post(slack))
        .route("/discord/{case}", post(discord))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Hooks { addr, seen }
}

/// An engine whose secret `HOOK` is `url`.
fn hook_engine(url: &str) -> Engine {
    Engine::builder()
        .secrets(MapSecrets::new().with("HOOK", url))
        .build()
}

#[tokio::test]
async fn slack_messages_arrive_in_slacks_shape() {
    let s = hooks().await;
    let engine = hook_engine(&s.url("/slack/ok"));
    let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*Deploy* done"}}]);
    let flow = one_node(
        "slack_message",
        &json!({
            "webhook_secret": "HOOK",
            "text": "Deploy done",
            "blocks": blocks,
            "thread_ts": "1700000000.000100",
            "unfurl_links": false
        }),
        None,
        &["response"],
    );
    let outcome = run(&engine, &flow, None).await.unwrap();
    assert_eq!(out(&outcome, "response"), json!("ok"));
    // Text from the input replaces the configured one.
    let flow = one_node(
        "slack_message",
        &json!({"webhook_secret": "HOOK", "text": "configured"}),
        Some("text"),
        &["response"],
    );
    run(&engine, &flow, Some(json!("from the input")))
        .await
        .unwrap();
    let seen = s.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].2, "application/json");
    assert_eq!(
        seen[0].3,
        json!({
            "text": "Deploy done",
            "blocks": blocks,
            "thread_ts": "1700000000.000100",
            "unfurl_links": false
        })
    );
    assert_eq!(seen[1].3, json!({"text": "from the input"}));
}

#[tokio::test]
async fn slack_errors_carry_slacks_words() {
    let s = hooks().await;
    for (case, status, retryable) in [
        ("invalid_payload", "400 Bad Request", false),
        ("action_prohibited", "403 Forbidden", false),
        ("channel_not_found", "404 Not Found", false),
        ("channel_is_archived", "410 Gone", false),
        ("rate_limited", "429 Too Many Requests", true),
        ("broken", "500 Internal Server Error", true),
    ] {
        let engine = hook_engine(&s.url(&format!("/slack/{case}")));
        let flow = one_node(
            "slack_message",
            &json!({"webhook_secret": "HOOK", "text": "hi"}),
            None,
            &["response"],
        );
        let error = node_error(run(&engine, &flow, None).await);
        let words = if case == "broken" {
            "internal_error"
        } else {
            case
        };
        assert_eq!(
            error.message(),
            format!("Slack webhook (secret `HOOK`) answered {status}: {words}")
        );
        assert_eq!(error.is_retryable(), retryable, "{case}");
        let delay = (case == "rate_limited").then_some(Duration::from_secs(7));
        assert_eq!(error.retry_after(), delay, "{case}");
        // The URL, a secret, is in no message.
        assert!(!error.message().contains(&s.addr.to_string()));
    }
    // Too long a text is refused before anything is sent.
    let before = s.seen().len();
    let engine = hook_engine(&s.url("/slack/ok"));
    let flow = one_node(
        "slack_message",
        &json!({"webhook_secret": "HOOK"}),
        Some("text"),
        &["response"],
    );
    let error = node_error(run(&engine, &flow, Some(json!("x".repeat(40_001)))).await);
    assert_eq!(
        error.message(),
        "slack_message: the text has 40001 characters; Slack takes at most 40000"
    );
    assert_eq!(s.seen().len(), before);
    // A missing secret.
    let error = node_error(run(&Engine::new(), &flow, Some(json!("hi"))).await);
    assert_eq!(error.message(), "node `node`: secret `HOOK` is not set");
}

#[tokio::test]
async fn slack_server_down_is_retryable_and_names_no_url() {
    let engine = hook_engine("http://127.0.0.1:9/services/T000/B000/XXXX");
    let flow = one_node(
        "slack_message",
        &json!({"webhook_secret": "HOOK", "text": "hi"}),
        None,
        &["response"],
    );
    let error = node_error(run(&engine, &flow, None).await);
    assert!(
        error
            .message()
            .starts_with("Slack webhook (secret `HOOK`): cannot connect:"),
        "{error}"
    );
    assert!(!error.message().contains("XXXX"), "{error}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn discord_messages_arrive_in_discords_shape() {
    let s = hooks().await;
    let engine = hook_engine(&s.url("/discord/ok"));
    let embeds = json!([{"title": "Build 7", "description": "failed", "fields": [{"name": "stage", "value": "test"}]}]);
    let flow = one_node(
        "discord_message",
        &json!({
            "webhook_secret": "HOOK",
            "content": "Build **7** failed",
            "username": "ghostflow",
            "avatar_url": "https://example.com/bot.png",
            "embeds": embeds,
            "allowed_mentions": {"parse": []},
            "thread_id": "555"
        }),
        None,
        &["id", "message"],
    );
    let outcome = run(&engine, &flow, None).await.unwrap();
    assert_eq!(out(&outcome, "id"), json!("1122334455667788"));
    assert_eq!(
        out(&outcome, "message")["content"],
        json!("Build **7** failed")
    );
    // wait: false: Discord answers 204 and there is no id.
    let flow = one_node(
        "discord_message",
        &json!({"webhook_secret": "HOOK", "wait": false}),
        Some("content"),
        &[],
    );
    let outcome = run(&engine, &flow, Some(json!("quick"))).await.unwrap();
    assert_eq!(outcome.node("node").unwrap().status, NodeStatus::Succeeded);
    let seen = s.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].1.as_deref(), Some("wait=true&thread_id=555"));
    assert_eq!(seen[0].2, "application/json");
    assert_eq!(
        seen[0].3,
        json!({
            "content": "Build **7** failed",
            "embeds": embeds,
            "username": "ghostflow",
            "avatar_url": "https://example.com/bot.png",
            "allowed_mentions": {"parse": []}
        })
    );
    assert_eq!(seen[1].1.as_deref(), Some("wait=false"));
    assert_eq!(seen[1].3, json!({"content": "quick"}));
}

#[tokio::test]
async fn discord_errors_carry_discords_words() {
    let s = hooks().await;
    for (case, expected, retryable, delay) in [
        (
            "limited",
            "429 Too Many Requests: You are being rate limited.",
            true,
            Some(Duration::from_millis(1500)),
        ),
        (
            "empty",
            "400 Bad Request: Cannot send an empty message (code 50006)",
            false,
            None,
        ),
        (
            "unknown",
            "404 Not Found: Unknown Webhook (code 10015)",
            false,
            None,
        ),
        ("broken", "502 Bad Gateway: upstream", true, None),
    ] {
        let engine = hook_engine(&s.url(&format!("/discord/{case}")));
        let flow = one_node(
            "discord_message",
            &json!({"webhook_secret": "HOOK", "content": "hi"}),
            None,
            &["id"],
        );
        let error = node_error(run(&engine, &flow, None).await);
        assert_eq!(
            error.message(),
            format!("Discord webhook (secret `HOOK`) answered {expected}")
        );
        assert_eq!(error.is_retryable(), retryable, "{case}");
        assert_eq!(error.retry_after(), delay, "{case}");
    }
    // Limits are checked before sending.
    let before = s.seen().len();
    let engine = hook_engine(&s.url("/discord/ok"));
    let flow = one_node(
        "discord_message",
        &json!({"webhook_secret": "HOOK"}),
        Some("content"),
        &["id"],
    );
    let error = node_error(run(&engine, &flow, Some(json!("é".repeat(2001)))).await);
    assert_eq!(
        error.message(),
        "input `content`: 2001 characters; Discord takes at most 2000"
    );
    let error = node_error(run(&engine, &flow, Some(json!("  "))).await);
    assert_eq!(
        error.message(),
        "discord_message: nothing to post: give `content` or `embeds` (config or input)"
    );
    assert_eq!(s.seen().len(), before);
}

#[test]
fn webhook_bad_configs_fail_when_the_flow_loads() {
    let long = "x".repeat(2001);
    for (node_type, config, expected) in [
        (
            "slack_message",
            r#"{ text: hi }"#.to_owned(),
            "nodes[0].config: missing field `webhook_secret`".to_owned(),
        ),
        (
            "slack_message",
            r#"{ webhook_secret: H, blocks: [{ text: x }] }"#.to_owned(),
            "nodes[0].config.blocks: block 0 is not a Block Kit block".to_owned(),
        ),
        (
            "slack_message",
            r#"{ webhook_secret: H, webhook_url: "https://hooks.slack.com/x" }"#.to_owned(),
            "unknown field `webhook_url`".to_owned(),
        ),
        (
            "discord_message",
            format!(r#"{{ webhook_secret: H, content: "{long}" }}"#),
            "nodes[0].config.content: 2001 characters; Discord takes at most 2000".to_owned(),
        ),
        (
            "discord_message",
            r#"{ webhook_secret: H, content: x, avatar_url: "ftp://x/a.png" }"#.to_owned(),
            "nodes[0].config.avatar_url: `ftp://x/a.png` is not an http or https URL".to_owned(),
        ),
        (
            "discord_message",
            r#"{ webhook_secret: H, content: x, allowed_mentions: [] }"#.to_owned(),
            "nodes[0].config.allowed_mentions:".to_owned(),
        ),
    ] {
        let err = load_error(&format!(
            "version: 1\nname: bad\nnodes:\n  - id: n\n    type: {node_type}\n    config: {config}\n"
        ));
        assert!(
            err.contains(&expected),
            "{config}: `{err}` lacks `{expected}`"
        );
    }
}

#[tokio::test]
async fn on_error_continue_puts_the_failure_on_the_error_port() {
    let s = hooks().await;
    let engine = hook_engine(&s.url("/slack/channel_not_found"));
    let flow = load(
        r#"
version: 1
name: notify
nodes:
  - id: notify
    type: slack_message
    config: { webhook_secret: HOOK, text: "hello" }
    on_error: continue
  - id: again
    type: slack_message
    config: { webhook_secret: HOOK }
edges:
  - { from: notify.response, to: again.text }
outputs:
  failure: notify.error
"#,
    );
    let outcome = run(&engine, &flow, None).await.unwrap();
    let failure: NodeFailure = outcome.output("failure").unwrap();
    assert_eq!(failure.node, "notify");
    assert_eq!(
        failure.message,
        "Slack webhook (secret `HOOK`) answered 404 Not Found: channel_not_found"
    );
    assert!(!failure.retryable);
    assert_eq!(outcome.node("notify").unwrap().status, NodeStatus::Failed);
    assert_eq!(outcome.node("again").unwrap().status, NodeStatus::Skipped);
    assert_eq!(s.seen().len(), 1);
}
