//! Configuration pieces shared by the HTTP nodes: methods, credentials,
//! bodies, form and query values, and the checks that make a bad config
//! fail when the node is created.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ghostflow::Context;
use ghostflow::document::DurationText;
use indexmap::IndexMap;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::HttpError;

/// An HTTP method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `GET`: read.
    #[default]
    Get,
    /// `POST`: create, or any action.
    Post,
    /// `PUT`: replace.
    Put,
    /// `PATCH`: change part of.
    Patch,
    /// `DELETE`: remove.
    Delete,
    /// `HEAD`: `GET` without the body.
    Head,
    /// `OPTIONS`: what the server allows.
    Options,
}

impl Method {
    pub(crate) fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
            Method::Options => reqwest::Method::OPTIONS,
        }
    }
}

/// Credentials sent with the request, read from the engine's secrets when
/// the node runs. They are sent to the configured URL's origin only, never
/// to another host a redirect leads to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The name of the secret holding the password.
        password_secret: String,
    },
    /// A bearer token (`Authorization: Bearer ...`).
    Bearer {
        /// The name of the secret holding the token.
        token_secret: String,
    },
}

impl Auth {
    /// The `Authorization` header value, marked sensitive.
    pub(crate) fn header(&self, ctx: &Context) -> Result<HeaderValue, ghostflow::NodeError> {
        let (text, secret_name) = match self {
            Auth::Basic {
                username,
                password_secret,
            } => {
                let password = ctx.secret(password_secret)?;
                let pair = format!("{username}:{}", password.expose());
                (format!("Basic {}", BASE64.encode(pair)), password_secret)
            }
            Auth::Bearer { token_secret } => {
                let token = ctx.secret(token_secret)?;
                (format!("Bearer {}", token.expose()), token_secret)
            }
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            ghostflow::NodeError::permanent(format!(
                "config.auth: secret `{secret_name}` (or the user name) has characters a header cannot carry"
            ))
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// A request body given in the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestBody {
    /// Any JSON value, sent as `application/json`.
    Json(serde_json::Value),
    /// Fields sent as `application/x-www-form-urlencoded`; a list sends the
    /// field once per item.
    Form(IndexMap<String, FieldValue>),
    /// Text, sent as `text/plain; charset=utf-8`.
    Text(String),
    /// Bytes written in base64, sent as `application/octet-stream`.
    Bytes(Base64Bytes),
}

/// How a body is encoded: the kind of the configured body, which the
/// `body` input keeps when it replaces the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Json,
    Form,
    Text,
    Bytes,
}

impl RequestBody {
    pub(crate) fn kind(&self) -> BodyKind {
        match self {
            RequestBody::Json(_) => BodyKind::Json,
            RequestBody::Form(_) => BodyKind::Form,
            RequestBody::Text(_) => BodyKind::Text,
            RequestBody::Bytes(_) => BodyKind::Bytes,
        }
    }

    /// The bytes to send and their content type.
    pub(crate) fn encode(&self) -> (Vec<u8>, &'static str) {
        match self {
            RequestBody::Json(value) => (value.to_string().into_bytes(), JSON),
            RequestBody::Form(fields) => (form_encode(fields.iter()).into_bytes(), FORM),
            RequestBody::Text(text) => (text.clone().into_bytes(), TEXT),
            RequestBody::Bytes(bytes) => (bytes.0.clone(), OCTETS),
        }
    }
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const TEXT: &str = "text/plain; charset=utf-8";
const OCTETS: &str = "application/octet-stream";

impl BodyKind {
    /// Encodes a value from the `body` input as this kind of body.
    pub(crate) fn encode_input(
        self,
        value: &serde_json::Value,
    ) -> Result<(Vec<u8>, &'static str), HttpError> {
        let bad = |reason: String| HttpError::Input {
            port: "body",
            reason,
        };
        Ok(match self {
            BodyKind::Json => (value.to_string().into_bytes(), JSON),
            BodyKind::Form => {
                let object = value.as_object().ok_or_else(|| {
                    bad(format!(
                        "a form body must be an object of fields, got {}",
                        crate::kind(value)
                    ))
                })?;
                let mut fields = Vec::with_capacity(object.len());
                for (name, value) in object {
                    let field = FieldValue::new(value.clone())
                        .map_err(|reason| bad(format!("field `{name}`: {reason}")))?;
                    fields.push((name, field));
                }
                (
                    form_encode(fields.iter().map(|(k, v)| (*k, v))).into_bytes(),
                    FORM,
                )
            }
            BodyKind::Text => match value {
                serde_json::Value::String(text) => (text.clone().into_bytes(), TEXT),
                other => {
                    return Err(bad(format!(
                        "a text body must be a string, got {}",
                        crate::kind(other)
                    )));
                }
            },
            BodyKind::Bytes => match value {
                serde_json::Value::String(text) => (
                    BASE64
                        .decode(text.trim())
                        .map_err(|e| bad(format!("a bytes body must be base64: {e}")))?,
                    OCTETS,
                ),
                other => {
                    return Err(bad(format!(
                        "a bytes body must be a base64 string, got {}",
                        crate::kind(other)
                    )));
                }
            },
        })
    }
}

/// Fields as `a=1&b=x+y`.
pub(crate) fn form_encode<'a>(
    fields: impl Iterator<Item = (&'a String, &'a FieldValue)>,
) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        for text in value.texts() {
            out.append_pair(name, &text);
        }
    }
    out.finish()
}

/// A form field or query parameter: a string, number or boolean, or a list
/// of them (the parameter is repeated once per item).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct FieldValue(serde_json::Value);

impl FieldValue {
    /// Checks that `value` is a scalar or a list of scalars.
    pub fn new(value: serde_json::Value) -> Result<Self, String> {
        let scalar = |v: &serde_json::Value| {
            matches!(
                v,
                serde_json::Value::String(_)
                    | serde_json::Value::Number(_)
                    | serde_json::Value::Bool(_)
            )
        };
        match &value {
            v if scalar(v) => Ok(FieldValue(value)),
            serde_json::Value::Array(items) if items.iter().all(scalar) => Ok(FieldValue(value)),
            other => Err(format!(
                "expected a string, number, boolean or a list of them, got {}",
                crate::kind(other)
            )),
        }
    }

    /// The value as text, once per item.
    pub(crate) fn texts(&self) -> Vec<Cow<'_, str>> {
        fn text(v: &serde_json::Value) -> Cow<'_, str> {
            match v {
                serde_json::Value::String(s) => Cow::Borrowed(s),
                other => Cow::Owned(other.to_string()),
            }
        }
        match &self.0 {
            serde_json::Value::Array(items) => items.iter().map(text).collect(),
            one => vec![text(one)],
        }
    }
}

impl<'de> Deserialize<'de> for FieldValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        FieldValue::new(serde_json::Value::deserialize(deserializer)?)
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for FieldValue {
    fn schema_name() -> Cow<'static, str> {
        "FieldValue".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A string, number or boolean, or a list of them (repeated once per item).",
            "anyOf": [
                { "type": ["string", "number", "boolean"] },
                { "type": "array", "items": { "type": ["string", "number", "boolean"] } }
            ]
        })
    }
}

/// Bytes written as base64 text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base64Bytes(pub Vec<u8>);

impl Serialize for Base64Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        BASE64
            .decode(text.trim())
            .map(Base64Bytes)
            .map_err(|e| serde::de::Error::custom(format!("not valid base64: {e}")))
    }
}

impl JsonSchema for Base64Bytes {
    fn schema_name() -> Cow<'static, str> {
        "Base64Bytes".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Bytes, written in base64.",
            "type": "string",
            "contentEncoding": "base64"
        })
    }
}

/// How the response body becomes the `body` output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// By the `Content-Type`: JSON types are parsed, text types (and
    /// untyped UTF-8) become a string, anything else base64. An empty body
    /// is `null`.
    #[default]
    Auto,
    /// Parsed as JSON (`null` when empty); not JSON is an error.
    Json,
    /// A string; not UTF-8 is an error.
    Text,
    /// The bytes in base64.
    Bytes,
}

impl ResponseFormat {
    /// The response body as the `body` output, or why it cannot be.
    pub(crate) fn decode(
        self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<serde_json::Value, String> {
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let format = match self {
            ResponseFormat::Auto if body.is_empty() => return Ok(serde_json::Value::Null),
            ResponseFormat::Auto if is_json_type(essence) => ResponseFormat::Json,
            ResponseFormat::Auto if is_text_type(essence) => ResponseFormat::Text,
            ResponseFormat::Auto if essence.is_empty() && std::str::from_utf8(body).is_ok() => {
                ResponseFormat::Text
            }
            ResponseFormat::Auto => ResponseFormat::Bytes,
            other => other,
        };
        match format {
            ResponseFormat::Json if body.is_empty() => Ok(serde_json::Value::Null),
            ResponseFormat::Json => serde_json::from_slice(body).map_err(|e| {
                format!("the response is not valid JSON ({e}); `response: text` reads it as text")
            }),
            ResponseFormat::Text => String::from_utf8(body.to_vec())
                .map(serde_json::Value::String)
                .map_err(|_| {
                    "the response is not UTF-8 text; `response: bytes` reads it as base64"
                        .to_owned()
                }),
            ResponseFormat::Bytes | ResponseFormat::Auto => {
                Ok(serde_json::Value::String(BASE64.encode(body)))
            }
        }
    }
}

fn is_json_type(essence: &str) -> bool {
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

fn is_text_type(essence: &str) -> bool {
    essence.starts_with("text/")
        || essence.ends_with("+xml")
        || matches!(
            essence,
            "application/xml"
                | "application/javascript"
                | "application/ecmascript"
                | "application/x-www-form-urlencoded"
                | "application/x-ndjson"
                | "application/yaml"
                | "application/graphql"
        )
}

/// Accepts an absolute `http` or `https` URL.
pub(crate) fn absolute_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_url(&text).map_err(serde::de::Error::custom)?;
    Ok(text)
}

/// Parses an absolute `http` or `https` URL.
pub(crate) fn parse_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("`{text}`: {e}"))?;
    check_scheme(&url)?;
    Ok(url)
}

/// Only `http` and `https` are fetched.
pub(crate) fn check_scheme(url: &url::Url) -> Result<(), String> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(format!(
            "`{}`: the scheme `{other}` is not supported; use http or https",
            display_url(url)
        )),
    }
}

/// A URL for messages, without a password it may carry.
pub(crate) fn display_url(url: &url::Url) -> String {
    if url.password().is_some() {
        let mut shown = url.clone();
        // Only fails for URLs that cannot have a password at all.
        let _ = shown.set_password(Some("***"));
        shown.to_string()
    } else {
        url.to_string()
    }
}

/// Accepts header names and values that HTTP can carry.
pub(crate) fn header_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<IndexMap<String, String>, D::Error> {
    let headers = IndexMap::<String, String>::deserialize(deserializer)?;
    check_headers(&headers).map_err(serde::de::Error::custom)?;
    Ok(headers)
}

/// Checks and converts headers; the error names the bad one.
pub(crate) fn check_headers(headers: &IndexMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| {
            format!("header `{name}`: the value has characters a header cannot carry")
        })?;
        map.insert(header, value);
    }
    Ok(map)
}

/// 30 seconds.
pub(crate) fn default_timeout() -> DurationText {
    DurationText(Duration::from_secs(30))
}

/// 10 MiB.
pub(crate) fn default_max_response_bytes() -> u64 {
    10 * 1024 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_values_are_scalars_or_lists_of_them() {
        let ok = FieldValue::new(json!(["a", 1, true])).unwrap();
        assert_eq!(ok.texts(), ["a", "1", "true"]);
        assert_eq!(
            FieldValue::new(json!({"a": 1})).unwrap_err(),
            "expected a string, number, boolean or a list of them, got an object"
        );
        assert!(FieldValue::new(json!([[1]])).is_err());
        assert!(FieldValue::new(json!(null)).is_err());
        let fields: IndexMap<String, FieldValue> =
            serde_json::from_value(json!({"q": "a b&c", "tag": ["x", "y"], "n": 2})).unwrap();
        assert_eq!(form_encode(fields.iter()), "q=a+b%26c&tag=x&tag=y&n=2");
    }

    #[test]
    fn bodies_encode_with_their_content_type() {
        let body: RequestBody = serde_json::from_value(json!({"bytes": "AAEC/w=="})).unwrap();
        assert_eq!(body.encode(), (vec![0, 1, 2, 255], OCTETS));
        let err = serde_json::from_value::<RequestBody>(json!({"bytes": "%%"})).unwrap_err();
        assert!(err.to_string().contains("not valid base64"), "{err}");
        let body: RequestBody = serde_json::from_value(json!({"json": {"a": [1]}})).unwrap();
        assert_eq!(body.encode(), (br#"{"a":[1]}"#.to_vec(), JSON));
        assert_eq!(
            BodyKind::Form
                .encode_input(&json!({"a": "1", "b": [2, 3]}))
                .unwrap(),
            (b"a=1&b=2&b=3".to_vec(), FORM)
        );
        assert_eq!(
            BodyKind::Text
                .encode_input(&json!(3))
                .unwrap_err()
                .to_string(),
            "input `body`: a text body must be a string, got a number"
        );
        assert_eq!(
            BodyKind::Form
                .encode_input(&json!({"a": {"b": 1}}))
                .unwrap_err()
                .to_string(),
            "input `body`: field `a`: expected a string, number, boolean or a list of them, got an object"
        );
        assert_eq!(
            BodyKind::Bytes.encode_input(&json!("aGk=")).unwrap(),
            (b"hi".to_vec(), OCTETS)
        );
    }

    #[test]
    fn responses_decode_by_content_type_or_as_told() {
        let typed = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_str(t).unwrap(),
            );
            h
        };
        let none = HeaderMap::new();
        let auto = ResponseFormat::Auto;
        assert_eq!(
            auto.decode(&typed("application/json; charset=utf-8"), br#"{"a":1}"#),
            Ok(json!({"a": 1}))
        );
        assert_eq!(
            auto.decode(&typed("application/problem+json"), b"[1]"),
            Ok(json!([1]))
        );
        assert_eq!(auto.decode(&typed("text/html"), b"<p>"), Ok(json!("<p>")));
        assert_eq!(auto.decode(&none, b"plain"), Ok(json!("plain")));
        assert_eq!(auto.decode(&none, &[0xff, 0]), Ok(json!("/wA=")));
        assert_eq!(auto.decode(&typed("image/png"), &[1, 2]), Ok(json!("AQI=")));
        assert_eq!(
            auto.decode(&typed("application/json"), b""),
            Ok(json!(null))
        );
        assert!(
            auto.decode(&typed("application/json"), b"{oops")
                .unwrap_err()
                .starts_with("the response is not valid JSON")
        );
        assert_eq!(ResponseFormat::Json.decode(&none, b"[2]"), Ok(json!([2])));
        assert_eq!(
            ResponseFormat::Text.decode(&typed("application/json"), b"{}"),
            Ok(json!("{}"))
        );
        assert!(ResponseFormat::Text.decode(&none, &[0xff]).is_err());
        assert_eq!(
            ResponseFormat::Bytes.decode(&typed("text/plain"), b"hi"),
            Ok(json!("aGk="))
        );
    }

    #[test]
    fn urls_and_headers_are_checked() {
        assert!(parse_url("https://example.com/a?b=c").is_ok());
        assert_eq!(
            parse_url("/relative").unwrap_err(),
            "`/relative`: relative URL without a base"
        );
        assert_eq!(
            parse_url("ftp://example.com/").unwrap_err(),
            "`ftp://example.com/`: the scheme `ftp` is not supported; use http or https"
        );
        let url = url::Url::parse("https://ada:pw@example.com/").unwrap();
        assert_eq!(display_url(&url), "https://ada:***@example.com/");
        let mut headers = IndexMap::new();
        headers.insert("X-Ok".to_owned(), "fine".to_owned());
        assert!(check_headers(&headers).is_ok());
        headers.insert("Bad Name".to_owned(), "v".to_owned());
        assert_eq!(
            check_headers(&headers).unwrap_err(),
            "`Bad Name` is not a valid header name"
        );
    }
}
