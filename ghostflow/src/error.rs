//! Errors: [`NodeError`] for node authors, [`Error`] for everything else.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::port::PortError;

/// Whether a failed attempt is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A transient failure: the retry policy may run the node again.
    Retryable,
    /// A failure that would happen again: never retried.
    Permanent,
}

/// The error a node returns.
///
/// Any `std::error::Error` converts into a retryable `NodeError` with `?`;
/// use [`NodeError::permanent`] for failures that retrying cannot fix.
#[derive(Clone)]
pub struct NodeError {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl NodeError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        NodeError {
            kind: ErrorKind::Retryable,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        NodeError {
            kind: ErrorKind::Permanent,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// Asks the retry policy to wait at least `delay` before the next attempt
    /// (for example from an HTTP `Retry-After` header).
    #[must_use]
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Whether the failure may be retried.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the failure may be retried.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// The message, without the source chain.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The delay the node asked for before a retry.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The underlying error, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }

    /// The same error with another message (same kind, delay and source).
    pub(crate) fn with_message(mut self, message: String) -> Self {
        self.message = message;
        self
    }

    pub(crate) fn from_port(err: PortError) -> Self {
        NodeError::permanent(err.to_string())
    }

    pub(crate) fn timeout(after: Duration) -> Self {
        NodeError::retryable(format!("timed out after {after:?}"))
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for NodeError {
    fn from(err: E) -> Self {
        let mut message = err.to_string();
        let mut cause = err.source();
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        NodeError {
            kind: ErrorKind::Retryable,
            message,
            retry_after: None,
            source: Some(Arc::new(err)),
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

/// One reason why a flow is invalid. [`Error::Invalid`] lists all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// Two nodes share an id.
    DuplicateId {
        /// The id.
        id: String,
    },
    /// A node id is empty or contains characters other than letters, digits, `_` and `-`.
    InvalidId {
        /// The id.
        id: String,
    },
    /// The edges form a cycle.
    Cycle {
        /// The nodes on the cycle, in edge order.
        nodes: Vec<String>,
    },
    /// A required input port is not connected.
    UnconnectedInput {
        /// The node.
        node: String,
        /// The input port.
        port: String,
    },
    /// An input port is connected more than once.
    InputConnectedTwice {
        /// The node.
        node: String,
        /// The input port.
        port: String,
        /// Every source connected to it, as `node.port`.
        sources: Vec<String>,
    },
    /// Two flow inputs or two flow outputs share a name.
    DuplicateFlowPort {
        /// `input` or `output`.
        direction: String,
        /// The name.
        name: String,
    },
    /// An edge or flow output names a node or port that does not exist.
    UnknownPort {
        /// The endpoint as given.
        endpoint: String,
        /// `input`, `output` or `flow input`.
        direction: &'static str,
    },
    /// A port handle from another builder was used.
    ForeignPort {
        /// What the handle was used for.
        context: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::DuplicateId { id } => write!(f, "duplicate node id `{id}`"),
            Problem::InvalidId { id } => write!(
                f,
                "invalid node id `{id}`: use letters, digits, `_` and `-` only"
            ),
            Problem::Cycle { nodes } => {
                write!(f, "cycle: {} -> {}", nodes.join(" -> "), nodes[0])
            }
            Problem::UnconnectedInput { node, port } => {
                write!(f, "node `{node}`: required input `{port}` is not connected")
            }
            Problem::InputConnectedTwice {
                node,
                port,
                sources,
            } => write!(
                f,
                "node `{node}`: input `{port}` is connected {} times (from {}); an input takes exactly one edge",
                sources.len(),
                sources.join(", ")
            ),
            Problem::DuplicateFlowPort { direction, name } => {
                write!(f, "duplicate flow {direction} `{name}`")
            }
            Problem::UnknownPort {
                endpoint,
                direction,
            } => write!(f, "{endpoint}: no such {direction} port"),
            Problem::ForeignPort { context } => {
                write!(
                    f,
                    "{context}: the port handle belongs to another flow builder"
                )
            }
        }
    }
}

/// Everything that can go wrong outside a node author's own code.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The flow is invalid; every problem found is listed.
    #[error("invalid flow `{flow}`: {} problem(s):\n  - {}", problems.len(), problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  - "))]
    Invalid {
        /// The flow's name.
        flow: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// A node failed and its on-error policy is `fail`.
    #[error("node `{node}` failed after {attempts} attempt(s): {error}")]
    NodeFailed {
        /// The node id.
        node: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: NodeError,
    },
    /// The execution was cancelled.
    #[error("execution cancelled")]
    Cancelled,
    /// A required flow input was not given.
    #[error("flow input `{name}` is required but was not given")]
    MissingInput {
        /// The input's name.
        name: String,
    },
    /// A flow input that the flow does not declare was given.
    #[error("flow input `{name}` is not declared by the flow (declared: {declared})")]
    UnknownInput {
        /// The input's name.
        name: String,
        /// The declared inputs, comma-separated.
        declared: String,
    },
    /// A flow input was given a value of the wrong type.
    #[error("flow input `{name}` expects `{expected}`, got `{found}`")]
    InputType {
        /// The input's name.
        name: String,
        /// The declared type.
        expected: String,
        /// The given type.
        found: String,
    },
    /// A flow input's value does not match the input's JSON Schema.
    #[error("flow input `{name}` does not match its schema: {}", problems.join("; "))]
    InputInvalid {
        /// The input's name.
        name: String,
        /// Every mismatch, as `path: message`.
        problems: Vec<String>,
    },
    /// A flow output was read as the wrong type or is missing.
    #[error("flow output `{name}`: {reason}")]
    Output {
        /// The output's name.
        name: String,
        /// What went wrong.
        reason: String,
    },
}
