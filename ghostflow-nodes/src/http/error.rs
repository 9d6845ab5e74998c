//! What can go wrong in the HTTP nodes, and whether retrying can help.

use std::time::Duration;

use ghostflow::NodeError;
use ghostflow::document::DurationText;
use reqwest::StatusCode;

use crate::net::Refusal;

/// A failure of an HTTP node. [`HttpError::into_node_error`] turns it into
/// the [`NodeError`] the engine sees: retryable for what may pass (timeouts,
/// connection failures, 5xx, 408, 429), permanent for the rest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The response has a status the node treats as a failure.
    #[error("{method} {url}: {status}{}", snippet(body))]
    Status {
        /// The request's method.
        method: String,
        /// The URL that answered (after redirects).
        url: String,
        /// The status.
        status: StatusCode,
        /// The start of the response body, when it is text.
        body: String,
        /// How long the server asked to wait (`Retry-After` on 429 and 503).
        retry_after: Option<Duration>,
    },
    /// No connection could be made (refused, unreachable, DNS, TLS).
    #[error("{method} {url}: cannot connect: {reason}")]
    Connect {
        /// The request's method.
        method: String,
        /// The URL.
        url: String,
        /// The innermost cause, such as `Connection refused (os error 111)`.
        reason: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The request or the response broke off after the connection was made.
    #[error("{method} {url}: {reason}")]
    Transport {
        /// The request's method.
        method: String,
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
        /// Whether it may pass on another attempt.
        retryable: bool,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// No complete response within the node's timeout.
    #[error("{method} {url}: no complete response within {} (config.timeout)", DurationText(*after))]
    Timeout {
        /// The request's method.
        method: String,
        /// The URL being fetched when time ran out.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// The engine's network policy refused an address.
    #[error("{method} {url}: {refusal}")]
    Refused {
        /// The request's method.
        method: String,
        /// The URL refused (the original or a redirect hop).
        url: String,
        /// Why.
        #[source]
        refusal: Refusal,
    },
    /// More redirects than allowed.
    #[error("{method} {url}: more than {limit} redirect(s) (config.max_redirects)")]
    TooManyRedirects {
        /// The request's method.
        method: String,
        /// The URL that redirected once too often.
        url: String,
        /// The limit.
        limit: u32,
    },
    /// A redirect that cannot be followed.
    #[error("{method} {url}: cannot follow the redirect to `{location}`: {reason}")]
    BadRedirect {
        /// The request's method.
        method: String,
        /// The URL that redirected.
        url: String,
        /// The `Location` header.
        location: String,
        /// Why.
        reason: String,
    },
    /// The response body is larger than the node accepts.
    #[error(
        "{method} {url}: the response body is larger than {limit} bytes (config.max_response_bytes)"
    )]
    TooLarge {
        /// The request's method.
        method: String,
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The response body is not what the node was told to expect.
    #[error("{method} {url}: {reason}")]
    Decode {
        /// The request's method.
        method: String,
        /// The URL.
        url: String,
        /// What is wrong, such as `the response is not valid JSON: ...`.
        reason: String,
    },
    /// A GraphQL response with errors.
    #[error("{method} {url}: GraphQL error(s): {summary}")]
    GraphQl {
        /// The request's method.
        method: String,
        /// The endpoint.
        url: String,
        /// The first error messages, with their locations and paths.
        summary: String,
    },
    /// An input value the node cannot use.
    #[error("input `{port}`: {reason}")]
    Input {
        /// The input port.
        port: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A configuration value that only turned out wrong at run time (for
    /// example after an input changed the URL).
    #[error("config.{field}: {reason}")]
    Config {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The engine's HTTP client could not be made.
    #[error("{0}")]
    Client(String),
}

impl HttpError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Status { status, .. } => status_is_retryable(*status),
            HttpError::Connect { .. } | HttpError::Timeout { .. } => true,
            HttpError::Transport { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The error the engine sees: retryable or permanent, with the delay
    /// the server asked for.
    pub fn into_node_error(self) -> NodeError {
        let message = self.to_string();
        let retry_after = match &self {
            HttpError::Status { retry_after, .. } => *retry_after,
            _ => None,
        };
        let error = if self.is_retryable() {
            NodeError::retryable(message)
        } else {
            NodeError::permanent(message)
        };
        let error = match retry_after {
            Some(delay) => error.with_retry_after(delay),
            None => error,
        };
        error.with_source(self)
    }
}

pub(crate) use crate::net::status_is_retryable;

fn snippet(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_status() {
        let status = |code: u16, retry_after: Option<Duration>| HttpError::Status {
            method: "GET".into(),
            url: "http://h/x".into(),
            status: StatusCode::from_u16(code).unwrap(),
            body: String::new(),
            retry_after,
        };
        for (code, retryable) in [
            (400, false),
            (401, false),
            (404, false),
            (408, true),
            (422, false),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
        ] {
            let e = status(code, None).into_node_error();
            assert_eq!(e.is_retryable(), retryable, "{code}");
            assert_eq!(e.retry_after(), None);
        }
        let e = status(429, Some(Duration::from_secs(3))).into_node_error();
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.message(), "GET http://h/x: 429 Too Many Requests");
        let timeout = HttpError::Timeout {
            method: "POST".into(),
            url: "http://h/".into(),
            after: Duration::from_millis(1500),
        };
        assert_eq!(
            timeout.to_string(),
            "POST http://h/: no complete response within 1500ms (config.timeout)"
        );
        assert!(timeout.into_node_error().is_retryable());
    }
}
