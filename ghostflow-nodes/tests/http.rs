//! The HTTP nodes against a real HTTP server: each test starts its own axum
//! server on an ephemeral port of 127.0.0.1 and runs flows (mostly written
//! as documents) with `Engine`.
#![cfg(feature = "http")]

mod common;
use common::{load, load_error};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ghostflow::document::Document;
use ghostflow::{
    ChannelSink, Engine, Error, EventKind, Flow, Inputs, MapSecrets, NodeFailure, NodeStatus,
    Outcome,
};
use ghostflow_nodes::NetworkPolicy;
use ghostflow_nodes::http::{Graphql, HttpRequest, RequestBody};
use serde_json::{Value, json};

// ---------------------------------------------------------------- the server

/// A running test server.
struct Server {
    addr: SocketAddr,
    /// Requests to `/limited` and `/unavailable` so far.
    hits: Arc<AtomicU32>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The same server under the name `localhost` (another origin).
    fn localhost_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.addr.port())
    }
}

#[derive(Clone)]
struct AppState {
    hits: Arc<AtomicU32>,
}

async fn server() -> Server {
    let hits = Arc::new(AtomicU32::new(0));
    let app = Router::new()
        .route("/echo", any(echo))
        .route("/status/{code}", any(status))
        .route(
            "/text",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "hello, text") }),
        )
        .route(
            "/bytes",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/octet-stream")],
                    vec![0u8, 1, 2, 255],
                )
            }),
        )
        .route("/redirect/{n}", any(redirect_chain))
        .route("/redirect-to", any(redirect_to))
        .route("/limited", get(limited))
        .route("/unavailable", get(unavailable))
        .route("/unauthorized", get(unauthorized))
        .route(
            "/slow",
            get(|| async {
                std::future::pending::<()>().await;
                "never"
            }),
        )
        .route("/large/{bytes}", get(large))
        .route("/chunked/{chunks}", get(chunked))
        .route("/peer", get(peer))
        .route("/graphql", post(graphql_endpoint))
        .with_state(AppState { hits: hits.clone() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Server { addr, hits }
}

fn json_response(status: StatusCode, value: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// Everything the request carried.
async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({
            "method": method.as_str(),
            "path": uri.path(),
            "query": uri.query(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
            "body_base64": BASE64.encode(&body),
        }),
    )
}

async fn status(Path(code): Path<u16>) -> Response {
    let status = StatusCode::from_u16(code).unwrap();
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    json_response(status, json!({"error": format!("status {code}")}))
}

/// `/redirect/3` → `/redirect/2` → ... → `/echo`, with the status given by
/// `?status=` (302 by default).
async fn redirect_chain(Path(n): Path<u32>, RawQuery(query): RawQuery) -> Response {
    let status = query
        .as_deref()
        .and_then(|q| q.strip_prefix("status="))
        .and_then(|s| s.parse().ok())
        .unwrap_or(302);
    let next = if n <= 1 {
        "/echo".to_owned()
    } else {
        format!("/redirect/{}?status={status}", n - 1)
    };
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::LOCATION, next)],
    )
        .into_response()
}

/// A redirect to the URL in `?url=`.
async fn redirect_to(RawQuery(query): RawQuery) -> Response {
    let target = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "url")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    (StatusCode::FOUND, [(header::LOCATION, target)]).into_response()
}

/// 429 with `Retry-After: 1` on the first request, then 200.
async fn limited(State(state): State<AppState>) -> Response {
    if state.hits.fetch_add(1, Ordering::SeqCst) == 0 {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "slow down",
        )
            .into_response()
    } else {
        json_response(StatusCode::OK, json!({"ok": true}))
    }
}

/// 503 with `Retry-After` as an HTTP date ten seconds ahead on the first
/// request, then 200.
async fn unavailable(State(state): State<AppState>) -> Response {
    if state.hits.fetch_add(1, Ordering::SeqCst) == 0 {
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(10));
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, date)],
            "maintenance",
        )
            .into_response()
    } else {
        json_response(StatusCode::OK, json!({"ok": true}))
    }
}

/// 401 that echoes the credentials it was given, as careless servers do.
async fn unauthorized(headers: HeaderMap) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        StatusCode::UNAUTHORIZED,
        format!("invalid credentials: {given}"),
    )
        .into_response()
}

/// `bytes` bytes of `x`, with a `Content-Length`.
async fn large(Path(bytes): Path<usize>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], "x".repeat(bytes)).into_response()
}

/// `chunks` chunks of 64 KiB (`a`, `b`, ...), streamed without a length.
async fn chunked(Path(chunks): Path<u8>) -> Response {
    let stream = futures::stream::unfold(0u8, move |i| async move {
        if i == chunks {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let chunk = Bytes::from(vec![b'a' + i % 26; 64 * 1024]);
        Some((Ok::<_, std::io::Error>(chunk), i + 1))
    });
    let mut response = Body::from_stream(stream).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// The client's address, to see connections reused.
async fn peer(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    json_response(StatusCode::OK, json!({"peer": peer.to_string()}))
}

/// A small GraphQL endpoint speaking the GraphQL-over-HTTP wire format.
async fn graphql_endpoint(headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"errors": [{"message": format!("bad JSON: {e}")}]}),
            );
        }
    };
    let query = request["query"].as_str().unwrap_or_default();
    let auth = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    if query.contains("broken") {
        json_response(
            StatusCode::OK,
            json!({"data": null, "errors": [{
                "message": "Cannot query field \"broken\" on type \"Query\".",
                "locations": [{"line": 1, "column": 3}]
            }]}),
        )
    } else if query.contains("partial") {
        json_response(
            StatusCode::OK,
            json!({"data": {"a": 1, "b": null}, "errors": [{"message": "b failed", "path": ["b"]}]}),
        )
    } else if query.contains("invalid") {
        json_response(
            StatusCode::BAD_REQUEST,
            json!({"errors": [{"message": "Syntax Error: Unexpected Name \"invalid\"."}]}),
        )
    } else if query.contains("overloaded") {
        (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response()
    } else {
        json_response(
            StatusCode::OK,
            json!({"data": {
                "hello": "world",
                "variables": request["variables"],
                "operationName": request["operationName"],
                "auth": auth,
            }}),
        )
    }
}

// ------------------------------------------------------------------ helpers

/// A flow of one node of `node_type` with `config` (as JSON, which is
/// YAML too), extra node keys (`retry`, `timeout`...), and every output.
fn one_node(node_type: &str, config: Value, extra: &str) -> Flow {
    let outputs = match node_type {
        "graphql" => "  data: call.data\n  errors: call.errors\n",
        _ => "  body: call.body\n  status: call.status\n  headers: call.headers\n  url: call.url\n",
    };
    load(&format!(
        "version: 1\nname: one\nnodes:\n  - id: call\n    type: {node_type}\n    config: {config}\n{extra}outputs:\n{outputs}"
    ))
}

fn request(config: Value) -> Flow {
    one_node("http_request", config, "")
}

fn engine() -> Engine {
    Engine::builder()
        .secrets(
            MapSecrets::new()
                .with("API_TOKEN", "t0ken-value")
                .with("API_PASSWORD", "pa55"),
        )
        .build()
}

async fn run(engine: &Engine, flow: &Flow) -> Result<Outcome, Error> {
    engine.run(flow, Inputs::new()).await
}

fn out(outcome: &Outcome, name: &str) -> Value {
    outcome.output::<Value>(name).unwrap()
}

/// The node error of a failed run.
fn node_error(result: Result<Outcome, Error>) -> (ghostflow::NodeError, u32) {
    match result {
        Err(Error::NodeFailed {
            error, attempts, ..
        }) => (error, attempts),
        Err(other) => panic!("expected a node failure, got {other}"),
        Ok(outcome) => panic!(
            "expected a node failure, got outputs {:?}",
            outcome.outputs_json()
        ),
    }
}

// -------------------------------------------------------------------- tests

#[tokio::test]
async fn statuses_are_outputs_or_failures_of_the_right_kind() {
    let s = server().await;
    let engine = engine();
    for code in [200, 201] {
        let outcome = run(
            &engine,
            &request(json!({"url": s.url(&format!("/status/{code}"))})),
        )
        .await
        .unwrap();
        assert_eq!(out(&outcome, "status"), json!(code));
        assert_eq!(
            out(&outcome, "body"),
            json!({"error": format!("status {code}")})
        );
        assert_eq!(
            out(&outcome, "headers")["content-type"],
            json!("application/json")
        );
    }
    let outcome = run(
        &engine,
        &request(json!({"url": s.url("/status/204"), "method": "DELETE"})),
    )
    .await
    .unwrap();
    assert_eq!(out(&outcome, "status"), json!(204));
    assert_eq!(out(&outcome, "body"), json!(null));

    for (code, reason, retryable) in [
        (400, "400 Bad Request", false),
        (404, "404 Not Found", false),
        (500, "500 Internal Server Error", true),
    ] {
        let url = s.url(&format!("/status/{code}"));
        let (error, attempts) = node_error(run(&engine, &request(json!({"url": url}))).await);
        assert_eq!(
            error.message(),
            format!(r#"GET {url}: {reason}: {{"error":"status {code}"}}"#)
        );
        assert_eq!(error.is_retryable(), retryable, "{code}");
        assert_eq!(attempts, 1);
    }

    // With `fail_on_status: false` a flow can branch on the status.
    let outcome = run(
        &engine,
        &request(json!({"url": s.url("/status/404"), "fail_on_status": false})),
    )
    .await
    .unwrap();
    assert_eq!(out(&outcome, "status"), json!(404));
    assert_eq!(out(&outcome, "body"), json!({"error": "status 404"}));
}

#[tokio::test]
async fn responses_are_read_as_json_text_or_bytes() {
    let s = server().await;
    let engine = engine();
    let body = |config: Value| {
        let engine = engine.clone();
        async move {
            let outcome = run(&engine, &request(config)).await?;
            Ok::<_, Error>(out(&outcome, "body"))
        }
    };
    // auto: by Content-Type.
    assert_eq!(
        body(json!({"url": s.url("/echo")})).await.unwrap()["method"],
        json!("GET")
    );
    assert_eq!(
        body(json!({"url": s.url("/text")})).await.unwrap(),
        json!("hello, text")
    );
    assert_eq!(
        body(json!({"url": s.url("/bytes")})).await.unwrap(),
        json!("AAEC/w==")
    );
    // As told.
    assert_eq!(
        body(json!({"url": s.url("/status/200"), "response": "text"}))
            .await
            .unwrap(),
        json!(r#"{"error":"status 200"}"#)
    );
    assert_eq!(
        body(json!({"url": s.url("/text"), "response": "bytes"}))
            .await
            .unwrap(),
        json!(BASE64.encode("hello, text"))
    );
    assert_eq!(
        body(json!({"url": s.url("/status/200"), "response": "json"}))
            .await
            .unwrap(),
        json!({"error": "status 200"})
    );
    let (error, _) = node_error(
        run(
            &engine,
            &request(json!({"url": s.url("/text"), "response": "json"})),
        )
        .await,
    );
    assert!(
        error.message().starts_with(&format!(
            "GET {}: the response is not valid JSON",
            s.url("/text")
        )),
        "{error}"
    );
    assert!(!error.is_retryable());
    let (error, _) = node_error(
        run(
            &engine,
            &request(json!({"url": s.url("/bytes"), "response": "text"})),
        )
        .await,
    );
    assert!(error.message().contains("not UTF-8 text"), "{error}");
}

#[tokio::test]
async fn requests_arrive_as_sent() {
    let s = server().await;
    let engine = engine();
    let echo = |config: Value| {
        let engine = engine.clone();
        async move {
            let outcome = run(&engine, &request(config)).await.unwrap();
            out(&outcome, "body")
        }
    };

    // JSON body, query (a list repeats), headers, bearer token from a secret.
    let seen = echo(json!({
        "method": "POST",
        "url": s.url("/echo?fixed=1"),
        "query": {"q": "a b&c", "tag": ["x", "y"], "n": 2},
        "headers": {"X-Trace": "abc", "Accept": "application/json"},
        "body": {"json": {"name": "Ada", "tags": [1, 2]}},
        "auth": {"bearer": {"token_secret": "API_TOKEN"}}
    }))
    .await;
    assert_eq!(seen["method"], json!("POST"));
    assert_eq!(seen["path"], json!("/echo"));
    assert_eq!(seen["query"], json!("fixed=1&q=a+b%26c&tag=x&tag=y&n=2"));
    assert_eq!(seen["headers"]["x-trace"], json!("abc"));
    assert_eq!(seen["headers"]["accept"], json!("application/json"));
    assert_eq!(seen["headers"]["content-type"], json!("application/json"));
    assert_eq!(
        seen["headers"]["authorization"],
        json!("Bearer t0ken-value")
    );
    assert!(
        seen["headers"]["user-agent"]
            .as_str()
            .unwrap()
            .starts_with("ghostflow/")
    );
    let sent: Value = serde_json::from_str(seen["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"name": "Ada", "tags": [1, 2]}));

    // Form body and basic auth.
    let seen = echo(json!({
        "method": "PUT",
        "url": s.url("/echo"),
        "body": {"form": {"name": "Ada Lovelace", "lang": ["en", "fr"], "n": 1.5}},
        "auth": {"basic": {"username": "ada", "password_secret": "API_PASSWORD"}}
    }))
    .await;
    assert_eq!(seen["method"], json!("PUT"));
    assert_eq!(
        seen["body"],
        json!("name=Ada+Lovelace&lang=en&lang=fr&n=1.5")
    );
    assert_eq!(
        seen["headers"]["content-type"],
        json!("application/x-www-form-urlencoded")
    );
    assert_eq!(
        seen["headers"]["authorization"],
        json!(format!("Basic {}", BASE64.encode("ada:pa55")))
    );

    // Text, and bytes (with a content type of the user's).
    let seen = echo(json!({
        "method": "PATCH",
        "url": s.url("/echo"),
        "body": {"text": "héllo\n"}
    }))
    .await;
    assert_eq!(seen["body"], json!("héllo\n"));
    assert_eq!(
        seen["headers"]["content-type"],
        json!("text/plain; charset=utf-8")
    );
    let seen = echo(json!({
        "method": "POST",
        "url": s.url("/echo"),
        "headers": {"Content-Type": "image/png"},
        "body": {"bytes": "iVBORw0KGgo="}
    }))
    .await;
    assert_eq!(seen["body_base64"], json!("iVBORw0KGgo="));
    assert_eq!(seen["headers"]["content-type"], json!("image/png"));

    // A missing secret is a permanent failure that names it.
    let (error, _) = node_error(
        run(
            &engine,
            &request(json!({
                "url": s.url("/echo"),
                "auth": {"bearer": {"token_secret": "NOT_SET"}}
            })),
        )
        .await,
    );
    assert_eq!(error.message(), "node `call`: secret `NOT_SET` is not set");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn secrets_do_not_leak_into_errors() {
    let s = server().await;
    let engine = engine();
    let url = s.url("/unauthorized");
    // The server echoes the bearer token in its 401 body.
    let (error, _) = node_error(
        run(
            &engine,
            &request(json!({"url": url, "auth": {"bearer": {"token_secret": "API_TOKEN"}}})),
        )
        .await,
    );
    assert_eq!(
        error.message(),
        format!("GET {url}: 401 Unauthorized: invalid credentials: Bearer ***")
    );
    assert!(!error.is_retryable());
    // Basic auth: the echoed base64 of `user:password` is masked too.
    let (error, _) = node_error(
        run(
            &engine,
            &request(json!({
                "url": url,
                "auth": {"basic": {"username": "ada", "password_secret": "API_PASSWORD"}}
            })),
        )
        .await,
    );
    assert_eq!(
        error.message(),
        format!("GET {url}: 401 Unauthorized: invalid credentials: Basic ***")
    );
    assert!(!error.message().contains(&BASE64.encode("ada:pa55")));
    // A secret in the URL (through an expression) is masked by the engine
    // wherever it shows up.
    let flow = request(json!({
        "url": s.url("/status/401"),
        "query": {"token": "{{ secrets.API_TOKEN }}"}
    }));
    let (error, _) = node_error(run(&engine, &flow).await);
    assert!(!error.message().contains("t0ken-value"), "{error}");
    assert!(error.message().contains("token=***"), "{error}");
    assert!(error.message().contains("401 Unauthorized"), "{error}");
}

#[tokio::test]
async fn inputs_complete_the_request_at_run_time() {
    let s = server().await;
    let flow = load(&format!(
        r#"
version: 1
name: inputs
inputs:
  path: {{ schema: {{ type: string }} }}
  query: {{ schema: {{ type: object }} }}
  headers: {{ schema: {{ type: object }} }}
  body: {{ schema: {{ type: object }} }}
nodes:
  - id: call
    type: http_request
    config:
      method: POST
      url: {base}
      query: {{ page: 1, keep: yes }}
      headers: {{ X-Config: config }}
      body: {{ form: {{}} }}
edges:
  - {{ from: input.path, to: call.url }}
  - {{ from: input.query, to: call.query }}
  - {{ from: input.headers, to: call.headers }}
  - {{ from: input.body, to: call.body }}
outputs:
  body: call.body
  url: call.url
"#,
        base = s.url("/api/")
    ));
    let outcome = engine()
        .run(
            &flow,
            Inputs::from_json(
                json!({
                    "path": "/echo",
                    "query": {"page": 2, "ids": [7, 8]},
                    "headers": {"X-Input": "input"},
                    "body": {"city": "Paris"}
                })
                .as_object()
                .cloned()
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    let seen = out(&outcome, "body");
    assert_eq!(seen["path"], json!("/echo"));
    assert_eq!(seen["query"], json!("page=2&keep=yes&ids=7&ids=8"));
    assert_eq!(seen["headers"]["x-config"], json!("config"));
    assert_eq!(seen["headers"]["x-input"], json!("input"));
    assert_eq!(seen["body"], json!("city=Paris"));
    assert_eq!(
        out(&outcome, "url"),
        json!(s.url("/echo?page=2&keep=yes&ids=7&ids=8"))
    );
}

#[tokio::test]
async fn redirects_are_followed_limited_or_returned() {
    let s = server().await;
    let engine = engine();
    // Followed.
    let outcome = run(&engine, &request(json!({"url": s.url("/redirect/3")})))
        .await
        .unwrap();
    assert_eq!(out(&outcome, "status"), json!(200));
    assert_eq!(out(&outcome, "url"), json!(s.url("/echo")));
    // Limited.
    let (error, _) = node_error(
        run(
            &engine,
            &request(json!({"url": s.url("/redirect/3"), "max_redirects": 2})),
        )
        .await,
    );
    assert_eq!(
        error.message(),
        format!(
            "GET {}: more than 2 redirect(s) (config.max_redirects)",
            s.url("/redirect/1?status=302")
        )
    );
    assert!(!error.is_retryable());
    // Not followed: the redirect is the answer.
    let outcome = run(
        &engine,
        &request(json!({"url": s.url("/redirect/3"), "follow_redirects": false})),
    )
    .await
    .unwrap();
    assert_eq!(out(&outcome, "status"), json!(302));
    assert_eq!(
        out(&outcome, "headers")["location"],
        json!("/redirect/2?status=302")
    );
    // 303 turns a POST into a GET without a body; 307 repeats it.
    for (status, method, body) in [(303, "GET", ""), (307, "POST", r#"{"a":1}"#)] {
        let outcome = run(
            &engine,
            &request(json!({
                "method": "POST",
                "url": s.url(&format!("/redirect/2?status={status}")),
                "body": {"json": {"a": 1}}
            })),
        )
        .await
        .unwrap();
        let seen = out(&outcome, "body");
        assert_eq!(seen["method"], json!(method), "{status}");
        assert_eq!(seen["body"], json!(body), "{status}");
    }
    // Credentials stay with their origin: `localhost` is another one.
    let target = s.localhost_url("/echo");
    let outcome = run(
        &engine,
        &request(json!({
            "url": s.url("/redirect-to"),
            "query": {"url": target},
            "auth": {"bearer": {"token_secret": "API_TOKEN"}},
            "headers": {"Cookie": "session=1", "X-Other": "kept"}
        })),
    )
    .await
    .unwrap();
    let seen = out(&outcome, "body");
    assert_eq!(seen["headers"]["authorization"], json!(null));
    assert_eq!(seen["headers"]["cookie"], json!(null));
    assert_eq!(seen["headers"]["x-other"], json!("kept"));
    // Same origin: they are sent again.
    let outcome = run(
        &engine,
        &request(json!({
            "url": s.url("/redirect/1"),
            "auth": {"bearer": {"token_secret": "API_TOKEN"}}
        })),
    )
    .await
    .unwrap();
    assert_eq!(
        out(&outcome, "body")["headers"]["authorization"],
        json!("Bearer t0ken-value")
    );
}

/// The delays the engine chose after failed attempts, and their errors.
fn retry_delays(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<ghostflow::Event>,
) -> Vec<(Option<Duration>, String)> {
    let mut delays = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let EventKind::NodeFailed {
            retry_in, error, ..
        } = event.kind
        {
            delays.push((retry_in, error));
        }
    }
    delays
}

// The clock is paused: the engine's retry wait passes in no time, and the
// time it waited is read from the clock, exactly.
#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_is_retried_no_sooner_than_asked() {
    let s = server().await;
    let (sink, mut events) = ChannelSink::new();
    let engine = Engine::builder().event_sink(sink).build();
    // The policy's own backoff (10 ms) is far below the server's 1 s.
    let flow = one_node(
        "http_request",
        json!({"url": s.url("/limited")}),
        "    retry: { max_attempts: 3, backoff: 10ms, jitter: 0 }\n",
    );
    let started = tokio::time::Instant::now();
    let outcome = run(&engine, &flow).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(out(&outcome, "body"), json!({"ok": true}));
    assert_eq!(outcome.node("call").unwrap().attempts, 2);
    assert_eq!(s.hits.load(Ordering::SeqCst), 2);
    assert_eq!(
        retry_delays(&mut events),
        [(
            Some(Duration::from_secs(1)),
            format!(
                "GET {}: 429 Too Many Requests: slow down",
                s.url("/limited")
            )
        )]
    );
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1100),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_503_with_an_http_date_is_retried_when_the_date_comes() {
    let s = server().await;
    let (sink, mut events) = ChannelSink::new();
    let engine = Engine::builder().event_sink(sink).build();
    let flow = one_node(
        "http_request",
        json!({"url": s.url("/unavailable")}),
        "    retry: { max_attempts: 5, backoff: 10ms, jitter: 0 }\n",
    );
    let started = tokio::time::Instant::now();
    let outcome = run(&engine, &flow).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(out(&outcome, "body"), json!({"ok": true}));
    assert_eq!(outcome.node("call").unwrap().attempts, 2);
    assert_eq!(s.hits.load(Ordering::SeqCst), 2);
    let delays = retry_delays(&mut events);
    assert_eq!(delays.len(), 1);
    let (delay, error) = &delays[0];
    assert_eq!(
        error,
        &format!(
            "GET {}: 503 Service Unavailable: maintenance",
            s.url("/unavailable")
        )
    );
    // The date has a precision of one second and was ten seconds ahead of
    // the server's (real) clock when it answered.
    let delay = delay.unwrap();
    assert!(
        delay > Duration::from_secs(5) && delay <= Duration::from_secs(10),
        "{delay:?}"
    );
    assert!(
        waited >= delay && waited < delay + Duration::from_millis(100),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_response_hits_the_node_timeout() {
    let s = server().await;
    let (error, _) = node_error(
        run(
            &engine(),
            &request(json!({"url": s.url("/slow"), "timeout": "150ms"})),
        )
        .await,
    );
    assert_eq!(
        error.message(),
        format!(
            "GET {}: no complete response within 150ms (config.timeout)",
            s.url("/slow")
        )
    );
    assert!(error.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn a_slow_response_hits_the_engine_timeout_policy() {
    let s = server().await;
    // The node would wait 30 s; the flow's policy gives it 150 ms.
    let flow = one_node(
        "http_request",
        json!({"url": s.url("/slow")}),
        "    timeout: 150ms\n",
    );
    let (error, _) = node_error(run(&engine(), &flow).await);
    assert_eq!(error.message(), "timed out after 150ms");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn bodies_over_the_cap_fail_and_bodies_under_it_pass() {
    let s = server().await;
    let engine = engine();
    // Announced by Content-Length.
    let url = s.url("/large/2000000");
    let (error, _) = node_error(
        run(
            &engine,
            &request(json!({"url": url, "max_response_bytes": 1_000_000})),
        )
        .await,
    );
    assert_eq!(
        error.message(),
        format!(
            "GET {url}: the response body is larger than 1000000 bytes (config.max_response_bytes)"
        )
    );
    assert!(!error.is_retryable());
    // Streamed without a length: stopped while reading.
    let url = s.url("/chunked/8");
    let (error, _) = node_error(
        run(
            &engine,
            &request(json!({"url": url, "max_response_bytes": 200_000})),
        )
        .await,
    );
    assert!(
        error
            .message()
            .contains("larger than 200000 bytes (config.max_response_bytes)"),
        "{error}"
    );
    // A few MiB under the default cap (10 MiB).
    let outcome = run(&engine, &request(json!({"url": s.url("/large/4194304")})))
        .await
        .unwrap();
    assert_eq!(out(&outcome, "body").as_str().unwrap().len(), 4_194_304);
}

#[tokio::test]
async fn a_chunked_response_is_read_whole() {
    let s = server().await;
    let outcome = run(&engine(), &request(json!({"url": s.url("/chunked/4")})))
        .await
        .unwrap();
    let body = out(&outcome, "body");
    let body = body.as_str().unwrap();
    assert_eq!(body.len(), 4 * 64 * 1024);
    let expected: String = "abcd"
        .chars()
        .flat_map(|c| std::iter::repeat_n(c, 64 * 1024))
        .collect();
    assert!(body == expected, "chunks out of order");
    assert_eq!(
        out(&outcome, "headers")["transfer-encoding"],
        json!("chunked")
    );
}

/// A port on 127.0.0.1 nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let port = closed_port().await;
    let url = format!("http://127.0.0.1:{port}/x");
    let flow = one_node(
        "http_request",
        json!({"url": url}),
        "    retry: { max_attempts: 2, backoff: 1ms }\n",
    );
    let (error, attempts) = node_error(run(&engine(), &flow).await);
    assert!(
        error
            .message()
            .starts_with(&format!("GET {url}: cannot connect: ")),
        "{error}"
    );
    assert!(error.message().contains("refused"), "{error}");
    assert!(error.is_retryable());
    assert_eq!(attempts, 2);
}

#[tokio::test]
async fn one_client_per_engine_reuses_connections() {
    let s = server().await;
    let url = s.url("/peer");
    let flow = load(&format!(
        r#"
version: 1
name: pooled
nodes:
  - {{ id: first, type: http_request, config: {{ url: "{url}" }} }}
  - {{ id: second, type: http_request, config: {{ url: "{url}" }} }}
edges:
  - {{ from: first.body, to: second.body }}
outputs:
  first: first.body
  second: second.body
"#
    ));
    // (`second` sends `first`'s body along, which waits for it: the two
    // requests are made one after the other.)
    let engine = engine();
    let outcome = run(&engine, &flow).await.unwrap();
    assert_eq!(out(&outcome, "first"), out(&outcome, "second"));
    // And across executions of the same engine.
    let again = run(&engine, &flow).await.unwrap();
    assert_eq!(out(&again, "first"), out(&outcome, "first"));
}

#[tokio::test]
async fn the_network_policy_refuses_private_addresses_when_set() {
    let s = server().await;
    let guarded = Engine::builder()
        .resource(NetworkPolicy::public_only())
        .build();
    // An IP literal.
    let url = s.url("/echo");
    let (error, _) = node_error(run(&guarded, &request(json!({"url": url}))).await);
    assert_eq!(
        error.message(),
        format!(
            "GET {url}: 127.0.0.1 is a loopback address, which this engine's network policy refuses"
        )
    );
    assert!(!error.is_retryable());
    // A name that resolves to a loopback address.
    let url = s.localhost_url("/echo");
    let (error, _) = node_error(run(&guarded, &request(json!({"url": url}))).await);
    assert!(
        error
            .message()
            .starts_with(&format!("GET {url}: `localhost` resolves to ")),
        "{error}"
    );
    assert!(
        error
            .message()
            .ends_with("a loopback address, which this engine's network policy refuses"),
        "{error}"
    );
    assert!(!error.is_retryable());
    // The same for graphql.
    let endpoint = s.url("/graphql");
    let (error, _) = node_error(
        run(
            &guarded,
            &graphql(json!({"endpoint": endpoint, "query": "{ a }"})),
        )
        .await,
    );
    assert_eq!(
        error.message(),
        format!(
            "POST {endpoint}: 127.0.0.1 is a loopback address, which this engine's network policy refuses"
        )
    );
    // A redirect into a private address, from a host the policy allows.
    let allowing = Engine::builder()
        .resource(NetworkPolicy::public_only().allow_host("127.0.0.1"))
        .build();
    let outcome = run(&allowing, &request(json!({"url": s.url("/echo")})))
        .await
        .unwrap();
    assert_eq!(out(&outcome, "status"), json!(200));
    for target in [
        s.localhost_url("/echo"),
        format!("http://127.0.0.2:{}/echo", s.addr.port()),
    ] {
        let flow = request(json!({"url": s.url("/redirect-to"), "query": {"url": target}}));
        let (error, _) = node_error(run(&allowing, &flow).await);
        assert!(
            error.message().starts_with(&format!("GET {target}: ")),
            "{error}"
        );
        assert!(
            error
                .message()
                .ends_with("a loopback address, which this engine's network policy refuses"),
            "{error}"
        );
    }
    // The default policy, or no policy at all: allowed.
    let open = Engine::builder().resource(NetworkPolicy::default()).build();
    for engine in [open, Engine::new()] {
        let outcome = run(&engine, &request(json!({"url": s.localhost_url("/echo")})))
            .await
            .unwrap();
        assert_eq!(out(&outcome, "status"), json!(200));
    }
}

#[tokio::test]
async fn bad_configs_fail_when_the_flow_loads_naming_the_field() {
    for (config, expected) in [
        (
            r#"{ url: "http://x/", method: FETCH }"#,
            "nodes[0].config.method:",
        ),
        (r#"{ method: GET }"#, "nodes[0].config: missing field `url`"),
        (
            r#"{ url: "http://x/", max_redirects: many }"#,
            "nodes[0].config.max_redirects:",
        ),
        (
            r#"{ url: "http://x/", timeout: forever }"#,
            "nodes[0].config.timeout:",
        ),
        (
            r#"{ url: "http://x/", headers: { "Bad Name": x } }"#,
            "nodes[0].config.headers: `Bad Name` is not a valid header name",
        ),
        (
            r#"{ url: "http://x/", fail_on_statuss: false }"#,
            "unknown field `fail_on_statuss`; did you mean `fail_on_status`?",
        ),
    ] {
        let yaml = format!(
            "version: 1\nname: bad\nnodes:\n  - id: call\n    type: http_request\n    config: {config}\n"
        );
        let err = load_error(&yaml);
        assert!(
            err.contains(expected),
            "{config}: `{err}` lacks `{expected}`"
        );
    }
    // The method is checked against the schema's list.
    let yaml = "version: 1\nname: bad\nnodes:\n  - id: call\n    type: http_request\n    config: { url: \"http://x/\", method: FETCH }\n";
    let err = load_error(yaml);
    assert!(err.contains("FETCH"), "{err}");
}

#[tokio::test]
async fn on_error_continue_routes_a_404_to_the_error_port() {
    let s = server().await;
    let url = s.url("/status/404");
    let flow = load(&format!(
        r#"
version: 1
name: lookup
nodes:
  - id: fetch
    type: http_request
    config: {{ url: "{url}" }}
    on_error: continue
  - id: after
    type: passthrough
edges:
  - {{ from: fetch.body, to: after.value }}
outputs:
  failure: fetch.error
"#
    ));
    let outcome = run(&engine(), &flow).await.unwrap();
    let failure: NodeFailure = outcome.output("failure").unwrap();
    assert_eq!(failure.node, "fetch");
    assert_eq!(
        failure.message,
        format!(r#"GET {url}: 404 Not Found: {{"error":"status 404"}}"#)
    );
    assert!(!failure.retryable);
    assert_eq!(failure.attempts, 1);
    assert_eq!(outcome.node("fetch").unwrap().status, NodeStatus::Failed);
    assert_eq!(outcome.node("after").unwrap().status, NodeStatus::Skipped);
}

#[tokio::test]
async fn typed_flows_run_and_read_back_as_documents() {
    let s = server().await;
    let mut b = Flow::builder("typed");
    let mut post = HttpRequest::get(s.url("/echo")).unwrap();
    post.method = ghostflow_nodes::http::Method::Post;
    post.body = Some(RequestBody::Json(json!({"hello": "typed"})));
    let fetch = b.add("fetch", post);
    b.output("status", fetch.out().status);
    b.output("body", fetch.out().body);
    let flow = b.build().unwrap();
    let direct = run(&engine(), &flow).await.unwrap();
    assert_eq!(direct.output::<u16>("status").unwrap(), 200);
    assert_eq!(out(&direct, "body")["body"], json!(r#"{"hello":"typed"}"#));

    let yaml = Document::from_flow(&flow).unwrap().to_yaml();
    let reloaded = run(&engine(), &load(&yaml)).await.unwrap();
    assert_eq!(out(&reloaded, "body"), out(&direct, "body"));
    assert!(yaml.contains("type: http_request"), "{yaml}");
    // A graphql node too.
    let node: Graphql = serde_json::from_value(json!({
        "endpoint": s.url("/graphql"),
        "query": "{ hello }"
    }))
    .unwrap();
    let mut b = Flow::builder("typed-graphql");
    let call = b.add("call", node);
    b.output("data", call.out().data);
    let flow = b.build().unwrap();
    let outcome = run(&engine(), &flow).await.unwrap();
    assert_eq!(out(&outcome, "data")["hello"], json!("world"));
}

// ------------------------------------------------------------------ graphql

fn graphql(config: Value) -> Flow {
    one_node("graphql", config, "")
}

#[tokio::test]
async fn graphql_sends_the_query_and_outputs_data() {
    let s = server().await;
    let flow = load(&format!(
        r#"
version: 1
name: gql
inputs:
  vars: {{ schema: {{ type: object }}, default: {{ id: 42, lang: fr }} }}
nodes:
  - id: call
    type: graphql
    config:
      endpoint: {endpoint}
      query: |
        query User($id: Int!, $lang: String) {{ user(id: $id) {{ name }} }}
      operation_name: User
      variables: {{ lang: en, limit: 10 }}
      auth:
        bearer: {{ token_secret: API_TOKEN }}
edges:
  - {{ from: input.vars, to: call.variables }}
outputs:
  data: call.data
  errors: call.errors
"#,
        endpoint = s.url("/graphql")
    ));
    let outcome = run(&engine(), &flow).await.unwrap();
    assert_eq!(
        out(&outcome, "data"),
        json!({
            "hello": "world",
            "variables": {"lang": "fr", "limit": 10, "id": 42},
            "operationName": "User",
            "auth": "Bearer t0ken-value"
        })
    );
    assert_eq!(out(&outcome, "errors"), json!([]));
}

#[tokio::test]
async fn graphql_errors_fail_unless_passed_through() {
    let s = server().await;
    let engine = engine();
    let endpoint = s.url("/graphql");
    let (error, _) = node_error(
        run(
            &engine,
            &graphql(json!({"endpoint": endpoint, "query": "{ broken }"})),
        )
        .await,
    );
    assert_eq!(
        error.message(),
        format!(
            r#"POST {endpoint}: GraphQL error(s): Cannot query field "broken" on type "Query". (line 1, column 3)"#
        )
    );
    assert!(!error.is_retryable());
    // Passed through: partial data and the errors.
    let outcome = run(
        &engine,
        &graphql(json!({"endpoint": endpoint, "query": "{ partial }", "fail_on_errors": false})),
    )
    .await
    .unwrap();
    assert_eq!(out(&outcome, "data"), json!({"a": 1, "b": null}));
    assert_eq!(
        out(&outcome, "errors"),
        json!([{"message": "b failed", "path": ["b"]}])
    );
    // A request the server rejects (400 with GraphQL errors) fails even so.
    let (error, _) = node_error(
        run(
            &engine,
            &graphql(json!({"endpoint": endpoint, "query": "invalid", "fail_on_errors": false})),
        )
        .await,
    );
    assert!(
        error
            .message()
            .ends_with(r#"GraphQL error(s): Syntax Error: Unexpected Name "invalid"."#),
        "{error}"
    );
    assert!(!error.is_retryable());
    // A server failure is retryable.
    let (error, _) = node_error(
        run(
            &engine,
            &graphql(json!({"endpoint": endpoint, "query": "{ overloaded }"})),
        )
        .await,
    );
    assert_eq!(
        error.message(),
        format!("POST {endpoint}: 503 Service Unavailable: try later")
    );
    assert!(error.is_retryable());
    // Not a GraphQL endpoint.
    let (error, _) = node_error(
        run(
            &engine,
            &graphql(json!({"endpoint": s.url("/text"), "query": "{ a }"})),
        )
        .await,
    );
    assert!(
        error.message().contains("405 Method Not Allowed"),
        "{error}"
    );
    let (error, _) = node_error(
        run(
            &engine,
            &graphql(json!({"endpoint": s.url("/echo"), "query": "{ a }"})),
        )
        .await,
    );
    assert!(
        error.message().ends_with(
            "200 OK: the response is not a GraphQL response (a JSON object with `data` or `errors`)"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn graphql_against_a_closed_port_is_retryable() {
    let port = closed_port().await;
    let endpoint = format!("http://127.0.0.1:{port}/graphql");
    let (error, _) = node_error(
        run(
            &engine(),
            &graphql(json!({"endpoint": endpoint, "query": "{ a }"})),
        )
        .await,
    );
    assert!(
        error
            .message()
            .starts_with(&format!("POST {endpoint}: cannot connect: ")),
        "{error}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn graphql_bad_config_fails_when_the_flow_loads() {
    let yaml = "version: 1\nname: bad\nnodes:\n  - id: q\n    type: graphql\n    config: { endpoint: \"http://x/graphql\", variables: [1] }\n";
    let err = load_error(yaml);
    assert!(
        err.contains("nodes[0].config: missing field `query`"),
        "{err}"
    );
    assert!(err.contains("nodes[0].config.variables:"), "{err}");
}
