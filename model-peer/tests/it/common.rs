//! Helpers: a plain HTTP client, and parsers for SSE and NDJSON bodies.

use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde_json::Value;

/// A plain HTTP client (no proxy; TLS configured but never used here).
pub(crate) fn client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .expect("a plain client builds")
}

/// A finished exchange: status, headers, the body's bytes, and the error
/// that ended the body early, if one did.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    pub(crate) cut: Option<reqwest::Error>,
}

impl Exchange {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("the body is UTF-8")
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.text()))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Reads a response to its end (or to the error that cut it).
pub(crate) async fn finish(mut response: reqwest::Response) -> Exchange {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    let mut cut = None;
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => body.extend_from_slice(&bytes),
            Ok(None) => break,
            Err(e) => {
                cut = Some(e);
                break;
            }
        }
    }
    Exchange {
        status,
        headers,
        body,
        cut,
    }
}

/// POSTs a JSON body with these extra headers and reads the whole answer.
pub(crate) async fn post_with(url: &str, headers: &[(&str, &str)], body: &Value) -> Exchange {
    let mut request = json_request(url, body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    finish(request.send().await.expect("the peer answers")).await
}

/// A POST with a JSON body.
pub(crate) fn json_request(url: &str, body: &Value) -> reqwest::RequestBuilder {
    client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
}

/// POSTs a JSON body and reads the whole answer.
pub(crate) async fn post(url: &str, body: &Value) -> Exchange {
    post_with(url, &[], body).await
}

/// POSTs raw bytes as the body.
pub(crate) async fn post_raw(url: &str, headers: &[(&str, &str)], body: &'static str) -> Exchange {
    let mut request = client().post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    finish(request.send().await.expect("the peer answers")).await
}

/// The Anthropic headers every request needs.
pub(crate) const ANTHROPIC: &[(&str, &str)] = &[("anthropic-version", "2023-06-01")];

/// One server-sent event: its `event:` name (if any) and its `data:`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sse {
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

impl Sse {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }
}

/// Parses an SSE body strictly: events separated by a blank line, each of
/// `event:` and `data:` lines only; panics on anything else, including a
/// last event without its blank line (unless `partial` allows it).
pub(crate) fn sse(text: &str, partial: bool) -> Vec<Sse> {
    let mut events = Vec::new();
    let mut blocks: Vec<&str> = text.split("\n\n").collect();
    let tail = blocks.pop().unwrap_or_default();
    assert!(
        partial || tail.is_empty(),
        "the stream does not end with a blank line: {tail:?}"
    );
    for block in blocks {
        let mut event = None;
        let mut data = Vec::new();
        for line in block.split('\n') {
            if let Some(name) = line.strip_prefix("event: ") {
                event = Some(name.to_owned());
            } else if let Some(value) = line.strip_prefix("data: ") {
                data.push(value);
            } else {
                panic!("not an SSE line: {line:?} in {text:?}");
            }
        }
        events.push(Sse {
            event,
            data: data.join("\n"),
        });
    }
    events
}

/// Parses an NDJSON body: every line ends with `\n` and is one JSON value.
pub(crate) fn ndjson(text: &str) -> Vec<Value> {
    assert!(text.ends_with('\n'), "NDJSON ends with a newline: {text:?}");
    text.lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect()
}

/// The cosine similarity of two vectors.
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// A JSON array of numbers as floats.
pub(crate) fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("an array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}
