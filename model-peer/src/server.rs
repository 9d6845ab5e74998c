//! The peer itself: the listening task, the reply queues, the request
//! record, and the routing of requests to the three protocols.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::builtin::{DEFAULT_DIMENSIONS, embed_text};
use crate::chat::Failure;
use crate::ids::Ids;
use crate::reply::{Kind, Reply};
use crate::{anthropic, ollama, openai};

/// The largest request body accepted (Anthropic's limit for messages).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Which wire protocol a request spoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// OpenAI-compatible (`/v1/chat/completions`, `/v1/embeddings`).
    Openai,
    /// Ollama's native API (`/api/...`).
    Ollama,
    /// Anthropic's messages API (`/v1/messages`).
    Anthropic,
}

impl Protocol {
    /// The protocol a request speaks, from its path (and, for paths both
    /// OpenAI and Anthropic have, its `anthropic-version` header).
    fn of(path: &str, headers: &HeaderMap) -> Protocol {
        match path {
            "/" => Protocol::Ollama,
            _ if path.starts_with("/api/") => Protocol::Ollama,
            _ if path.starts_with("/v1/messages") => Protocol::Anthropic,
            "/v1/chat/completions" | "/v1/embeddings" => Protocol::Openai,
            _ if headers.contains_key("anthropic-version") || headers.contains_key("x-api-key") => {
                Protocol::Anthropic
            }
            _ => Protocol::Openai,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Openai => "openai",
            Protocol::Ollama => "ollama",
            Protocol::Anthropic => "anthropic",
        })
    }
}

/// One request the peer received, as it arrived (valid or not).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Recorded {
    /// The protocol of its path.
    pub protocol: Protocol,
    /// Its HTTP method (`POST`).
    pub method: String,
    /// Its path (`/v1/chat/completions`), without the query.
    pub path: String,
    /// Its headers, names in lowercase; repeated headers joined by `, `.
    pub headers: BTreeMap<String, String>,
    /// Its body as JSON: `Null` when empty, a JSON string holding the text
    /// when it is not JSON.
    pub body: Value,
}

impl Recorded {
    /// The value of a header, by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What the running server shares with the [`ModelPeer`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    chat: Mutex<VecDeque<Reply>>,
    embeddings: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    api_key: Mutex<Option<String>>,
    models: Mutex<Option<Vec<String>>>,
    pub(crate) open_streams: watch::Sender<usize>,
    pub(crate) ids: Ids,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            chat: Mutex::new(VecDeque::new()),
            embeddings: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            api_key: Mutex::new(None),
            models: Mutex::new(None),
            open_streams: watch::Sender::new(0),
            ids: Ids::new(),
        }
    }

    /// The next chat reply, after its delay.
    pub(crate) async fn next_chat(&self) -> Option<Reply> {
        let reply = self.chat.lock().pop_front();
        wait(reply).await
    }

    /// The next embeddings reply, after its delay.
    pub(crate) async fn next_embeddings(&self) -> Option<Reply> {
        let reply = self.embeddings.lock().pop_front();
        wait(reply).await
    }

    /// The API key requests must carry, if any.
    pub(crate) fn api_key(&self) -> Option<String> {
        self.api_key.lock().clone()
    }

    /// Whether the peer serves this model (all models unless
    /// [`ModelPeer::only_models`] was called). `llama3.2` and
    /// `llama3.2:latest` name the same model.
    pub(crate) fn knows(&self, model: &str) -> bool {
        let models = self.models.lock();
        let Some(models) = models.as_ref() else {
            return true;
        };
        let bare = |m: &str| m.strip_suffix(":latest").unwrap_or(m).to_owned();
        models.iter().any(|m| bare(m) == bare(model))
    }

    /// The models to list (`/api/tags`, `/v1/models`).
    pub(crate) fn model_list(&self) -> Vec<String> {
        self.models.lock().clone().unwrap_or_else(|| {
            vec![
                "llama3.2:latest".to_owned(),
                "nomic-embed-text:latest".to_owned(),
            ]
        })
    }
}

async fn wait(reply: Option<Reply>) -> Option<Reply> {
    if let Some(delay) = reply.as_ref().and_then(|r| r.delay) {
        tokio::time::sleep(delay).await;
    }
    reply
}

/// A local server speaking the OpenAI-compatible, Ollama and Anthropic
/// wire formats, running as a tokio task until the handle is dropped.
///
/// All methods take `&self`: a test can hand `&peer` around and script it
/// while requests run.
#[derive(Debug)]
pub struct ModelPeer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl ModelPeer {
    /// Starts a peer on 127.0.0.1 and an ephemeral port, as a task of the
    /// current tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound (the machine has none free), or
    /// outside a tokio runtime.
    pub async fn start() -> ModelPeer {
        match ModelPeer::bind("127.0.0.1:0").await {
            Ok(peer) => peer,
            Err(e) => panic!("model peer: cannot listen on 127.0.0.1: {e}"),
        }
    }

    /// Starts a peer on the given address (port 0 for an ephemeral one).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<ModelPeer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new());
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            // Serving only ends with an accept error the listener cannot
            // recover from; the peer then stops answering.
            let _ = axum::serve(listener, app).await;
        });
        Ok(ModelPeer { addr, shared, task })
    }

    /// The address the peer listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the base URL for Ollama and Anthropic.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`: the base URL for OpenAI-compatible
    /// clients.
    pub fn openai_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues the answer to a coming chat request (any protocol): requests
    /// take replies in the order they were pushed; with the queue empty,
    /// the built-in model answers.
    pub fn push(&self, reply: Reply) -> &Self {
        self.shared.chat.lock().push_back(reply);
        self
    }

    /// Queues the answer to a coming embeddings request (any protocol):
    /// [`Reply::embeddings`], or an error, delay or malformed reply; with
    /// the queue empty, the built-in hashing answers.
    pub fn push_embeddings(&self, reply: Reply) -> &Self {
        self.shared.embeddings.lock().push_back(reply);
        self
    }

    /// The chat replies not yet taken.
    pub fn pending(&self) -> usize {
        self.shared.chat.lock().len()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().clone()
    }

    /// The last request received, if any.
    pub fn last_request(&self) -> Option<Recorded> {
        self.shared.requests.lock().last().cloned()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) -> &Self {
        self.shared.requests.lock().clear();
        self
    }

    /// Requires this API key from now on: `Authorization: Bearer KEY` for
    /// OpenAI and Ollama, `x-api-key: KEY` for Anthropic; a request without
    /// it, or with another, gets the protocol's 401.
    pub fn api_key(&self, key: impl Into<String>) -> &Self {
        *self.shared.api_key.lock() = Some(key.into());
        self
    }

    /// Serves only these models from now on (all by default): a request
    /// for another gets the protocol's "model not found" (404).
    pub fn only_models<S: Into<String>>(&self, models: impl IntoIterator<Item = S>) -> &Self {
        *self.shared.models.lock() = Some(models.into_iter().map(Into::into).collect());
        self
    }

    /// The number of streamed responses being sent right now.
    pub fn open_streams(&self) -> usize {
        *self.shared.open_streams.borrow()
    }

    /// Waits until exactly `n` streamed responses are being sent: `1` once
    /// a stream started, `0` once every stream ended or its client went
    /// away (for cancellation tests, with [`Reply::stall_after`]).
    pub async fn wait_open_streams(&self, n: usize) {
        let mut open = self.shared.open_streams.subscribe();
        // The sender lives in `self.shared`, so the channel cannot close.
        let _ = open.wait_for(|count| *count == n).await;
    }
}

impl Drop for ModelPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every request comes here: read, recorded, routed.
async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let protocol = Protocol::of(&path, &parts.headers);
    let bytes = axum::body::to_bytes(body, MAX_BODY).await;
    let body_value = match &bytes {
        Ok(bytes) if bytes.is_empty() => Value::Null,
        Ok(bytes) => serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
        Err(_) => Value::Null,
    };
    shared.requests.lock().push(Recorded {
        protocol,
        method: parts.method.to_string(),
        path: path.clone(),
        headers: header_map(&parts.headers),
        body: body_value,
    });
    let Ok(bytes) = bytes else {
        return too_large(protocol);
    };
    let headers = &parts.headers;
    let method = &parts.method;
    let known = |m: &Method| method == m || (*m == Method::GET && method == Method::HEAD);
    match path.as_str() {
        "/v1/chat/completions" if known(&Method::POST) => {
            openai::chat(&shared, headers, &bytes).await
        }
        "/v1/embeddings" if known(&Method::POST) => {
            openai::embeddings(&shared, headers, &bytes).await
        }
        "/v1/models" if known(&Method::GET) => match protocol {
            Protocol::Anthropic => anthropic::models(&shared, headers),
            _ => openai::models(&shared, headers),
        },
        "/v1/messages" if known(&Method::POST) => {
            anthropic::messages(&shared, headers, &bytes).await
        }
        "/api/chat" if known(&Method::POST) => ollama::chat(&shared, headers, &bytes).await,
        "/api/embed" if known(&Method::POST) => ollama::embed(&shared, headers, &bytes).await,
        "/api/embeddings" if known(&Method::POST) => {
            ollama::embeddings(&shared, headers, &bytes).await
        }
        "/api/tags" if known(&Method::GET) => ollama::tags(&shared, headers),
        "/api/version" if known(&Method::GET) => ollama::version(),
        "/" if known(&Method::GET) => ollama::root(),
        "/v1/chat/completions"
        | "/v1/embeddings"
        | "/v1/models"
        | "/v1/messages"
        | "/api/chat"
        | "/api/embed"
        | "/api/embeddings"
        | "/api/tags"
        | "/api/version"
        | "/" => match protocol {
            Protocol::Openai => openai::method_not_allowed(method, &path),
            Protocol::Anthropic => anthropic::not_found(&shared),
            Protocol::Ollama => ollama::method_not_allowed(),
        },
        _ => match protocol {
            Protocol::Openai => openai::not_found(method, &path),
            Protocol::Anthropic => anthropic::not_found(&shared),
            Protocol::Ollama => ollama::not_found(),
        },
    }
}

fn too_large(protocol: Protocol) -> Response {
    let message = format!("Request exceeds the maximum allowed number of bytes ({MAX_BODY}).");
    match protocol {
        Protocol::Openai => openai::error(413, &message, "invalid_request_error", None, None),
        Protocol::Anthropic => anthropic::error_response(413, "request_too_large", &message, None),
        Protocol::Ollama => ollama::error_response(413, &message, None),
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned())
            .and_modify(|have| {
                have.push_str(", ");
                have.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// The bearer token of a request, if it has one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A response with a JSON body.
pub(crate) fn json_response(status: u16, body: &Value) -> Response {
    bytes_response(status, "application/json", Bytes::from(body.to_string()))
}

/// A response with a body of this type.
pub(crate) fn bytes_response(status: u16, content_type: &'static str, body: Bytes) -> Response {
    body_response(status, content_type, Body::from(body))
}

/// A response with this body (a stream, for instance).
pub(crate) fn body_response(status: u16, content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Adds a header whose value the peer made (ids, numbers): never fails.
pub(crate) fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// Adds `retry-after` when the failure says how long to wait.
pub(crate) fn with_retry_after(mut response: Response, failure: &Failure) -> Response {
    if let Some(seconds) = failure.retry_after {
        set_header(&mut response, "retry-after", &seconds.to_string());
    }
    response
}

/// What an embeddings request gets.
#[derive(Debug)]
pub(crate) enum Vectors {
    /// These vectors, the body garbled or cut as the reply says.
    Ready {
        vectors: Vec<Vec<f32>>,
        malformed: bool,
        cut_after: Option<usize>,
    },
    /// An error.
    Fail(Failure),
    /// A reply of the wrong kind was queued.
    Mismatch(String),
}

/// The answer to an embeddings request for `inputs`, from the next queued
/// reply or the built-in hashing.
pub(crate) async fn vectors(
    shared: &Shared,
    inputs: &[String],
    dimensions: Option<usize>,
) -> Vectors {
    let reply = shared
        .next_embeddings()
        .await
        .unwrap_or_else(Reply::builtin);
    let vectors = match reply.kind {
        Kind::Status(status) => {
            return Vectors::Fail(Failure {
                status,
                message: reply.message,
                retry_after: reply.retry_after,
            });
        }
        Kind::Text(_) | Kind::ToolCalls(_) => {
            return Vectors::Mismatch(
                "a chat reply was queued for embedding requests (push it with push)".to_owned(),
            );
        }
        Kind::Embeddings(vectors) => vectors,
        Kind::Builtin => {
            let dimensions = dimensions.unwrap_or(DEFAULT_DIMENSIONS);
            inputs
                .iter()
                .map(|text| embed_text(text, dimensions))
                .collect()
        }
    };
    if let Some((_, status)) = reply.error_after {
        return Vectors::Fail(Failure {
            status,
            message: reply.message,
            retry_after: reply.retry_after,
        });
    }
    Vectors::Ready {
        vectors,
        malformed: reply.malformed,
        cut_after: reply.cut_after,
    }
}

/// Sends a finished JSON body, garbled or cut as the reply says.
pub(crate) fn finished(
    shared: &Arc<Shared>,
    status: u16,
    content_type: &'static str,
    body: String,
    malformed: bool,
    cut_after: Option<usize>,
) -> Response {
    let body = if malformed {
        crate::stream::garble(&body)
    } else {
        body
    };
    let bytes = Bytes::from(body);
    match cut_after {
        Some(n) => body_response(
            status,
            content_type,
            crate::stream::cut_body(bytes, n, shared),
        ),
        None => bytes_response(status, content_type, bytes),
    }
}
