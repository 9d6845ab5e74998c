//! One exchange on the engine's shared client ([`Net`]): a request, its
//! redirects, and the response body read up to a limit, all within one
//! timeout.
//!
//! The shared client follows no redirects: they are followed here, so the
//! limit and on/off are per node, the engine's [`NetworkPolicy`] sees every
//! hop, and credentials never follow a redirect to another origin.
//!
//! [`NetworkPolicy`]: crate::NetworkPolicy

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};

use super::config::{check_scheme, display_url};
use super::error::HttpError;
use crate::net::{Net, Refusal};

/// Everything one exchange needs.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: reqwest::Method,
    pub(crate) url: url::Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Vec<u8>>,
    /// The `Authorization` value, sent to the original origin only.
    pub(crate) auth: Option<HeaderValue>,
    pub(crate) timeout: Duration,
    /// `None`: redirects are answers; `Some(n)`: follow up to `n`.
    pub(crate) max_redirects: Option<u32>,
    pub(crate) max_response_bytes: u64,
}

/// A complete response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// The URL that answered, after redirects.
    pub(crate) url: url::Url,
    pub(crate) body: Vec<u8>,
    /// The credentials sent with the request (the `Authorization` value
    /// after its scheme), kept out of error messages: a server that echoes
    /// them in an error body would otherwise show them, in a form (basic
    /// auth's base64) the engine's masking of secret values cannot know.
    credentials: Option<String>,
}

impl Response {
    /// The failure for this response's status.
    pub(crate) fn status_error(&self, method: &reqwest::Method) -> HttpError {
        let retry_after = match self.status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => self
                .headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now())),
            _ => None,
        };
        HttpError::Status {
            method: method.to_string(),
            url: display_url(&self.url),
            status: self.status,
            body: body_snippet(&self.body, self.credentials.as_deref()),
            retry_after,
        }
    }
}

/// `Retry-After` as a delay: delay-seconds or an HTTP date (a date in the
/// past is no delay).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The start of a text body, on one line, for error messages, with
/// `credentials` masked.
fn body_snippet(body: &[u8], credentials: Option<&str>) -> String {
    const MAX_CHARS: usize = 200;
    let Ok(text) = std::str::from_utf8(body) else {
        return String::new();
    };
    let text = match credentials {
        Some(secret) if !secret.is_empty() && text.contains(secret) => {
            std::borrow::Cow::Owned(text.replace(secret, "***"))
        }
        _ => std::borrow::Cow::Borrowed(text),
    };
    let mut snippet: String = text
        .split_whitespace()
        .flat_map(|word| [" ", word])
        .skip(1)
        .collect();
    if let Some((cut, _)) = snippet.char_indices().nth(MAX_CHARS) {
        snippet.truncate(cut);
        snippet.push_str("...");
    }
    snippet
}

/// Sends `request`, following redirects as it says, and reads the response
/// body; all within `request.timeout`.
pub(crate) async fn send(net: &Net, request: Request) -> Result<Response, HttpError> {
    let timeout = request.timeout;
    let method = request.method.to_string();
    // The URL being fetched, for a timeout's message.
    let mut current = display_url(&request.url);
    let exchange = exchange(net, request, &mut current);
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout {
            method,
            url: current,
            after: timeout,
        }),
    }
}

async fn exchange(
    net: &Net,
    request: Request,
    current: &mut String,
) -> Result<Response, HttpError> {
    let Request {
        mut method,
        mut url,
        mut headers,
        mut body,
        auth,
        max_redirects,
        max_response_bytes,
        ..
    } = request;
    let origin = url.origin();
    let mut redirects = 0u32;
    loop {
        *current = display_url(&url);
        if let Some(refusal) = net.policy().refusal(&url) {
            return Err(HttpError::Refused {
                method: method.to_string(),
                url: current.clone(),
                refusal,
            });
        }
        let client = net
            .client_for(&url)
            .map_err(|e| HttpError::Client(e.message().to_owned()))?;
        let mut builder = client
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        if let Some(auth) = &auth
            && url.origin() == origin
        {
            builder = builder.header(header::AUTHORIZATION, auth.clone());
        }
        if let Some(body) = &body {
            builder = builder.body(body.clone());
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| transport_error(&method, current, e))?;
        let status = response.status();
        if let Some(limit) = max_redirects
            && status.is_redirection()
            && status != StatusCode::NOT_MODIFIED
            && let Some(location) = response.headers().get(header::LOCATION)
        {
            let bad = |reason: String| HttpError::BadRedirect {
                method: method.to_string(),
                url: current.clone(),
                location: String::from_utf8_lossy(location.as_bytes()).into_owned(),
                reason,
            };
            if redirects == limit {
                return Err(HttpError::TooManyRedirects {
                    method: method.to_string(),
                    url: current.clone(),
                    limit,
                });
            }
            let text = location
                .to_str()
                .map_err(|_| bad("the location is not ASCII".into()))?;
            let next = url.join(text).map_err(|e| bad(e.to_string()))?;
            check_scheme(&next).map_err(bad)?;
            // 303 always, and 301/302 after a POST (as browsers do), go on
            // as GET without a body; 307 and 308 repeat the request.
            let to_get = status == StatusCode::SEE_OTHER && method != reqwest::Method::HEAD
                || matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                    && method == reqwest::Method::POST;
            if to_get {
                method = reqwest::Method::GET;
                body = None;
                headers.remove(header::CONTENT_TYPE);
                headers.remove(header::CONTENT_LENGTH);
            }
            if next.origin() != url.origin() {
                // Credentials the user set by hand stay with their origin too.
                for name in [
                    header::AUTHORIZATION,
                    header::COOKIE,
                    header::PROXY_AUTHORIZATION,
                ] {
                    headers.remove(name);
                }
            }
            redirects += 1;
            url = next;
            continue;
        }
        let too_large = || HttpError::TooLarge {
            method: method.to_string(),
            url: current.clone(),
            limit: max_response_bytes,
        };
        if response
            .content_length()
            .is_some_and(|length| length > max_response_bytes)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(&method, current, e))?
        {
            if (bytes.len() + chunk.len()) as u64 > max_response_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        let credentials = auth
            .as_ref()
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .map(|(_, credentials)| credentials.trim().to_owned());
        return Ok(Response {
            credentials,
            status,
            headers: std::mem::take(response.headers_mut()),
            url,
            body: bytes,
        });
    }
}

/// A client error in words, with its kind: the innermost cause says most
/// (`Connection refused (os error 111)`), the client's own message names
/// the URL again.
fn transport_error(method: &reqwest::Method, url: &str, error: reqwest::Error) -> HttpError {
    let mut refusal = None;
    let mut innermost = None;
    let mut cause = std::error::Error::source(&error);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<Refusal>() {
            refusal = Some(r.clone());
        }
        innermost = Some(c.to_string());
        cause = c.source();
    }
    let method = method.to_string();
    let url = url.to_owned();
    if let Some(refusal) = refusal {
        return HttpError::Refused {
            method,
            url,
            refusal,
        };
    }
    let reason = innermost.unwrap_or_else(|| error.to_string());
    if error.is_connect() {
        HttpError::Connect {
            method,
            url,
            reason,
            source: error,
        }
    } else if error.is_builder() || error.is_request() && !error.is_body() {
        let retryable = !error.is_builder();
        HttpError::Transport {
            method,
            url,
            reason: format!("the request failed: {reason}"),
            retryable,
            source: error,
        }
    } else {
        HttpError::Transport {
            method,
            url,
            reason: format!("reading the response failed: {reason}"),
            retryable: true,
            source: error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        // 1_700_000_000 is Tue, 14 Nov 2023 22:13:20 GMT.
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        // The obsolete formats HTTP still accepts.
        assert_eq!(
            parse_retry_after("Tuesday, 14-Nov-23 22:13:21 GMT", now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn snippets_are_short_single_lines_of_text() {
        assert_eq!(
            body_snippet(b"{\n  \"error\": \"nope\"\n}", None),
            r#"{ "error": "nope" }"#
        );
        assert_eq!(body_snippet(&[0xff, 0xfe], None), "");
        let long = "x".repeat(500);
        assert_eq!(body_snippet(long.as_bytes(), None).len(), 203);
        assert_eq!(
            body_snippet(b"bad credentials: Basic YWRhOnBhNTU=", Some("YWRhOnBhNTU=")),
            "bad credentials: Basic ***"
        );
    }
}
