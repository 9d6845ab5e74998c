//! [`ModelSettings`]: the `model` block of every node that talks to a
//! model, checked when the flow loads, and the providers it makes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ghostflow::document::DurationText;
use ghostflow::prelude::*;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserializer;

use super::model::{ChatModel, EmbeddingModel};
use super::provider::{Anthropic, Endpoint, Ollama, OpenAi};

/// Which wire protocol a model server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// OpenAI's chat completions and embeddings API (`/v1/chat/completions`,
    /// `/v1/embeddings`), also spoken by LiteLLM, vLLM, the llama.cpp
    /// server, LM Studio and others: set `base_url`. Default base URL
    /// `https://api.openai.com/v1`.
    Openai,
    /// Ollama's native API (`/api/chat`, `/api/embed`). Default base URL
    /// `http://127.0.0.1:11434`.
    Ollama,
    /// Anthropic's messages API (`/v1/messages`). Chat only: Anthropic has
    /// no embeddings API. Default base URL `https://api.anthropic.com`.
    Anthropic,
}

impl Provider {
    /// The provider's name as configs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Ollama => "ollama",
            Provider::Anthropic => "anthropic",
        }
    }

    /// Where the provider's own service listens.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Provider::Openai => "https://api.openai.com/v1",
            Provider::Ollama => "http://127.0.0.1:11434",
            Provider::Anthropic => "https://api.anthropic.com",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an OpenAI-compatible server is asked for JSON matching a schema
/// (the `extract` node's answers). The servers that copy OpenAI's API do
/// not agree on this; every answer is checked against the schema anyway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchemaFormat {
    /// `response_format: {type: json_schema, json_schema: {name, schema}}`,
    /// as OpenAI, vLLM, the llama.cpp server and LM Studio take it.
    #[default]
    JsonSchema,
    /// `response_format: {type: json_object, schema}`, as
    /// llama-cpp-python's server and some hosted APIs take it (they refuse
    /// `json_schema`).
    JsonObject,
    /// No `response_format`: the schema goes into the system prompt, for
    /// servers that know neither.
    Instruction,
}

impl SchemaFormat {
    fn is_default(&self) -> bool {
        *self == SchemaFormat::JsonSchema
    }
}

/// The model a node talks to: which provider, which model, where, and with
/// which secret.
///
/// ```yaml
/// model:
///   provider: openai
///   name: gpt-4o-mini
///   base_url: http://127.0.0.1:11435/v1
///   api_key_secret: OPENAI_API_KEY
/// ```
///
/// Checked when the flow loads: the name is not empty, the URL is an
/// absolute `http`/`https` URL, headers are valid, and settings of one
/// provider (`organization`, `anthropic_version`) are not given to another.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// The provider's protocol: `openai` (and OpenAI-compatible servers),
    /// `ollama` or `anthropic`.
    pub provider: Provider,
    /// The model, as the provider names it (`gpt-4o-mini`, `llama3.2`,
    /// `claude-sonnet-4-5`).
    pub name: String,
    /// The server's base URL; by default the provider's own service. For
    /// OpenAI-compatible servers it ends with the API version
    /// (`http://127.0.0.1:8000/v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The name of the secret holding the API key, read when the node runs
    /// (sent as `Authorization: Bearer` to OpenAI-compatible servers and
    /// Ollama, as `x-api-key` to Anthropic). Without it no key is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret: Option<String>,
    /// Extra request headers (for a proxy or gateway), set after the
    /// provider's own, so they can replace them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Time for one whole request, the streamed answer included (default
    /// `10m`). The node's `timeout` policy may cut it shorter.
    #[serde(default = "default_timeout")]
    pub timeout: DurationText,
    /// The largest answer accepted, in bytes (default 32 MiB); a streamed
    /// answer counts all its events.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// OpenAI only: the organization to bill (`OpenAI-Organization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Anthropic only: the API version sent as `anthropic-version`
    /// (default `2023-06-01`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anthropic_version: Option<String>,
    /// Embeddings only: the number of dimensions to ask for, for models
    /// that can shorten their vectors (OpenAI's `text-embedding-3-*`,
    /// Ollama's `/api/embed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// OpenAI-compatible servers only: how to ask for JSON matching a
    /// schema (`json_schema`, the default; `json_object`; `instruction`).
    #[serde(default, skip_serializing_if = "SchemaFormat::is_default")]
    pub schema_format: SchemaFormat,
}

/// The Anthropic API version sent when `anthropic_version` is not set.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

fn default_timeout() -> DurationText {
    DurationText(Duration::from_secs(600))
}

fn default_max_response_bytes() -> u64 {
    32 * 1024 * 1024
}

impl<'de> Deserialize<'de> for ModelSettings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawSettings::deserialize(deserializer)?;
        ModelSettings::try_from(raw).map_err(serde::de::Error::custom)
    }
}

/// [`ModelSettings`] as written, each field checked on its own; the checks
/// across fields follow in `TryFrom`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    provider: Provider,
    #[serde(deserialize_with = "model_name")]
    name: String,
    #[serde(default, deserialize_with = "base_url")]
    base_url: Option<String>,
    #[serde(default, deserialize_with = "secret_name")]
    api_key_secret: Option<String>,
    #[serde(default, deserialize_with = "headers")]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout", deserialize_with = "timeout")]
    timeout: DurationText,
    #[serde(default = "default_max_response_bytes")]
    max_response_bytes: u64,
    #[serde(default)]
    organization: Option<String>,
    #[serde(default)]
    anthropic_version: Option<String>,
    #[serde(default, deserialize_with = "dimensions")]
    dimensions: Option<u32>,
    #[serde(default)]
    schema_format: Option<SchemaFormat>,
}

impl TryFrom<RawSettings> for ModelSettings {
    type Error = String;

    fn try_from(raw: RawSettings) -> Result<Self, String> {
        let settings = ModelSettings {
            provider: raw.provider,
            name: raw.name,
            base_url: raw.base_url,
            api_key_secret: raw.api_key_secret,
            headers: raw.headers,
            timeout: raw.timeout,
            max_response_bytes: raw.max_response_bytes,
            organization: raw.organization,
            anthropic_version: raw.anthropic_version,
            dimensions: raw.dimensions,
            schema_format: raw.schema_format.unwrap_or_default(),
        };
        if raw.schema_format.is_some() && settings.provider != Provider::Openai {
            return Err(format!(
                "`schema_format` is a setting of OpenAI-compatible servers, but the provider is {}",
                settings.provider
            ));
        }
        settings.check_across()?;
        Ok(settings)
    }
}

fn model_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let name = String::deserialize(deserializer)?;
    check_name(&name).map_err(serde::de::Error::custom)?;
    Ok(name)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        Err("the model name is empty".to_owned())
    } else {
        Ok(())
    }
}

fn base_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    parse_base_url(&text).map_err(serde::de::Error::custom)?;
    Ok(Some(text))
}

/// An absolute `http` or `https` URL with a host, without a query or
/// fragment (paths are appended to it).
pub(crate) fn parse_base_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("`{text}`: {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "`{text}`: the scheme `{other}` is not supported; use http or https"
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}`: the URL has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{text}`: a base URL has no query or fragment (the API's paths are appended to it)"
        ));
    }
    if url.password().is_some() {
        return Err(
            "the URL carries a password; name a secret in `api_key_secret` instead".to_owned(),
        );
    }
    Ok(url)
}

fn secret_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let name = Option::<String>::deserialize(deserializer)?;
    if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(serde::de::Error::custom(
            "the secret name is empty; leave `api_key_secret` out to send no key",
        ));
    }
    Ok(name)
}

fn headers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let headers = BTreeMap::<String, String>::deserialize(deserializer)?;
    check_headers(&headers).map_err(serde::de::Error::custom)?;
    Ok(headers)
}

/// The headers as the client sends them, or the first one HTTP cannot
/// carry.
pub(crate) fn check_headers(
    headers: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a valid header name"))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                format!("the value of `{name}` has characters a header cannot carry")
            })?;
            Ok((header, value))
        })
        .collect()
}

fn timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DurationText, D::Error> {
    let timeout = DurationText::deserialize(deserializer)?;
    if timeout.0.is_zero() {
        return Err(serde::de::Error::custom(
            "the timeout must be longer than 0",
        ));
    }
    Ok(timeout)
}

fn dimensions<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let dimensions = Option::<u32>::deserialize(deserializer)?;
    if dimensions == Some(0) {
        return Err(serde::de::Error::custom("at least 1 dimension"));
    }
    Ok(dimensions)
}

impl ModelSettings {
    /// Settings for `name` of `provider` at its default URL, without a key.
    pub fn new(provider: Provider, name: impl Into<String>) -> Self {
        ModelSettings {
            provider,
            name: name.into(),
            base_url: None,
            api_key_secret: None,
            headers: BTreeMap::new(),
            timeout: default_timeout(),
            max_response_bytes: default_max_response_bytes(),
            organization: None,
            anthropic_version: None,
            dimensions: None,
            schema_format: SchemaFormat::JsonSchema,
        }
    }

    /// An OpenAI (or OpenAI-compatible) model.
    pub fn openai(name: impl Into<String>) -> Self {
        ModelSettings::new(Provider::Openai, name)
    }

    /// An Ollama model.
    pub fn ollama(name: impl Into<String>) -> Self {
        ModelSettings::new(Provider::Ollama, name)
    }

    /// An Anthropic model.
    pub fn anthropic(name: impl Into<String>) -> Self {
        ModelSettings::new(Provider::Anthropic, name)
    }

    /// These settings with another base URL.
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// These settings with the API key read from secret `name`.
    #[must_use]
    pub fn api_key_secret(mut self, name: impl Into<String>) -> Self {
        self.api_key_secret = Some(name.into());
        self
    }

    /// These settings with another request timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = DurationText(timeout);
        self
    }

    /// These settings asking an OpenAI-compatible server for JSON in
    /// another way.
    #[must_use]
    pub fn schema_format(mut self, format: SchemaFormat) -> Self {
        self.schema_format = format;
        self
    }

    /// The checks that need more than one field.
    fn check_across(&self) -> Result<(), String> {
        if !self.schema_format.is_default() && self.provider != Provider::Openai {
            return Err(format!(
                "`schema_format` is a setting of OpenAI-compatible servers, but the provider is {}",
                self.provider
            ));
        }
        if self.organization.is_some() && self.provider != Provider::Openai {
            return Err(format!(
                "`organization` is an OpenAI setting, but the provider is {}",
                self.provider
            ));
        }
        if self.anthropic_version.is_some() && self.provider != Provider::Anthropic {
            return Err(format!(
                "`anthropic_version` is an Anthropic setting, but the provider is {}",
                self.provider
            ));
        }
        Ok(())
    }

    /// Every check of loading, again, for settings made in Rust; the
    /// endpoint they describe.
    pub(crate) fn endpoint(&self) -> Result<Endpoint, NodeError> {
        let bad = |field: &str, reason: String| {
            NodeError::permanent(format!("config.model.{field}: {reason}"))
        };
        check_name(&self.name).map_err(|r| bad("name", r))?;
        self.check_across()
            .map_err(|r| NodeError::permanent(format!("config.model: {r}")))?;
        let base = parse_base_url(
            self.base_url
                .as_deref()
                .unwrap_or(self.provider.default_base_url()),
        )
        .map_err(|r| bad("base_url", r))?;
        let mut headers = check_headers(&self.headers).map_err(|r| bad("headers", r))?;
        if let Some(organization) = &self.organization {
            let value = HeaderValue::from_str(organization).map_err(|_| {
                bad(
                    "organization",
                    "has characters a header cannot carry".to_owned(),
                )
            })?;
            headers.push((HeaderName::from_static("openai-organization"), value));
        }
        let version = self
            .anthropic_version
            .as_deref()
            .unwrap_or(DEFAULT_ANTHROPIC_VERSION);
        let anthropic_version = HeaderValue::from_str(version).map_err(|_| {
            bad(
                "anthropic_version",
                "has characters a header cannot carry".to_owned(),
            )
        })?;
        if self.timeout.0.is_zero() {
            return Err(bad("timeout", "the timeout must be longer than 0".into()));
        }
        if self.dimensions == Some(0) {
            return Err(bad("dimensions", "at least 1 dimension".into()));
        }
        Ok(Endpoint {
            provider: self.provider,
            model: self.name.clone(),
            official: url::Url::parse(self.provider.default_base_url())
                .is_ok_and(|default| default.host_str() == base.host_str()),
            base,
            api_key_secret: self.api_key_secret.clone(),
            headers,
            anthropic_version,
            timeout: self.timeout.0,
            max_response_bytes: self.max_response_bytes,
            dimensions: self.dimensions,
            schema_format: self.schema_format,
        })
    }

    /// Checks that the API key's secret is there, so that a missing one
    /// fails before any request.
    fn check_secret(&self, ctx: &Context) -> Result<(), NodeError> {
        if let Some(name) = &self.api_key_secret {
            ctx.secret(name)?;
        }
        Ok(())
    }

    /// The chat model these settings describe. The HTTP client is the
    /// engine's shared one; the API key is read on every request.
    ///
    /// # Errors
    /// Settings that do not check out (for settings made in Rust), or a
    /// missing secret: permanent errors naming the field.
    pub fn chat_model(&self, ctx: &Context) -> Result<Arc<dyn ChatModel>, NodeError> {
        let endpoint = self.endpoint()?;
        self.check_secret(ctx)?;
        Ok(match self.provider {
            Provider::Openai => Arc::new(OpenAi::new(endpoint)),
            Provider::Ollama => Arc::new(Ollama::new(endpoint)),
            Provider::Anthropic => Arc::new(Anthropic::new(endpoint)),
        })
    }

    /// The embedding model these settings describe.
    ///
    /// # Errors
    /// As [`chat_model`](Self::chat_model), and a permanent error for
    /// Anthropic, which has no embeddings API.
    pub fn embedding_model(&self, ctx: &Context) -> Result<Arc<dyn EmbeddingModel>, NodeError> {
        let endpoint = self.endpoint()?;
        self.check_secret(ctx)?;
        Ok(match self.provider {
            Provider::Openai => Arc::new(OpenAi::new(endpoint)),
            Provider::Ollama => Arc::new(Ollama::new(endpoint)),
            Provider::Anthropic => {
                return Err(NodeError::permanent(NO_ANTHROPIC_EMBEDDINGS));
            }
        })
    }
}

/// Why `provider: anthropic` cannot embed.
pub(crate) const NO_ANTHROPIC_EMBEDDINGS: &str = "config.model.provider: Anthropic has no embeddings API; use an `openai` (or OpenAI-compatible) or `ollama` embedding model";

/// Deserializes [`ModelSettings`] for an embedding model: Anthropic is
/// refused when the flow loads.
pub(crate) fn embedding_settings<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<ModelSettings, D::Error> {
    let settings = ModelSettings::deserialize(deserializer)?;
    if settings.provider == Provider::Anthropic {
        return Err(serde::de::Error::custom(
            "Anthropic has no embeddings API; use an `openai` (or OpenAI-compatible) or `ollama` embedding model",
        ));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<ModelSettings, String> {
        serde_path_to_error::deserialize::<_, ModelSettings>(value).map_err(|e| {
            let path = e.path().to_string();
            format!("{path}: {}", e.into_inner())
        })
    }

    #[test]
    fn settings_load_with_defaults_and_write_back() {
        let settings = parse(json!({"provider": "openai", "name": "gpt-4o-mini"})).unwrap();
        assert_eq!(settings, ModelSettings::openai("gpt-4o-mini"));
        assert_eq!(settings.timeout.0, Duration::from_secs(600));
        assert_eq!(
            serde_json::to_value(&settings).unwrap(),
            json!({"provider": "openai", "name": "gpt-4o-mini", "timeout": "10m", "max_response_bytes": 33554432})
        );
        let full = json!({
            "provider": "anthropic", "name": "claude", "base_url": "http://127.0.0.1:9/",
            "api_key_secret": "KEY", "headers": {"X-Team": "a"}, "timeout": "30s",
            "max_response_bytes": 1000, "anthropic_version": "2023-06-01"
        });
        let settings = parse(full.clone()).unwrap();
        assert_eq!(
            parse(serde_json::to_value(&settings).unwrap()),
            Ok(settings)
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        for (value, expected) in [
            (json!({"name": "x"}), ".: missing field `provider`"),
            (
                json!({"provider": "gemini", "name": "x"}),
                "provider: unknown variant `gemini`",
            ),
            (
                json!({"provider": "openai", "name": " "}),
                "name: the model name is empty",
            ),
            (
                json!({"provider": "openai", "name": "x", "base_url": "localhost:8000"}),
                "base_url: `localhost:8000`: the scheme `localhost` is not supported",
            ),
            (
                json!({"provider": "openai", "name": "x", "base_url": "/v1"}),
                "base_url: `/v1`: relative URL without a base",
            ),
            (
                json!({"provider": "openai", "name": "x", "base_url": "http://h/v1?x=1"}),
                "base_url: `http://h/v1?x=1`: a base URL has no query",
            ),
            (
                json!({"provider": "openai", "name": "x", "base_url": "http://u:pw@h/v1"}),
                "base_url: the URL carries a password",
            ),
            (
                json!({"provider": "openai", "name": "x", "api_key_secret": ""}),
                "api_key_secret: the secret name is empty",
            ),
            (
                json!({"provider": "openai", "name": "x", "headers": {"a b": "c"}}),
                "headers: `a b` is not a valid header name",
            ),
            (
                json!({"provider": "openai", "name": "x", "timeout": "0s"}),
                "timeout: the timeout must be longer than 0",
            ),
            (
                json!({"provider": "openai", "name": "x", "dimensions": 0}),
                "dimensions: at least 1 dimension",
            ),
            (
                json!({"provider": "openai", "name": "x", "temperature": 1}),
                "temperature: unknown field `temperature`",
            ),
            (
                json!({"provider": "ollama", "name": "x", "organization": "org"}),
                ".: `organization` is an OpenAI setting, but the provider is ollama",
            ),
            (
                json!({"provider": "openai", "name": "x", "anthropic_version": "v"}),
                ".: `anthropic_version` is an Anthropic setting, but the provider is openai",
            ),
            (
                json!({"provider": "ollama", "name": "x", "schema_format": "json_object"}),
                ".: `schema_format` is a setting of OpenAI-compatible servers, but the provider is ollama",
            ),
            (
                json!({"provider": "anthropic", "name": "x", "schema_format": "json_schema"}),
                ".: `schema_format` is a setting of OpenAI-compatible servers, but the provider is anthropic",
            ),
            (
                json!({"provider": "openai", "name": "x", "schema_format": "xml"}),
                "schema_format: unknown variant `xml`, expected one of `json_schema`, `json_object`, `instruction`",
            ),
        ] {
            let err = parse(value.clone()).unwrap_err();
            assert!(
                err.starts_with(expected),
                "{value}: `{err}` should start with `{expected}`"
            );
        }
    }

    #[test]
    fn endpoints_default_per_provider() {
        for (provider, url, official) in [
            (Provider::Openai, "https://api.openai.com/v1", true),
            (Provider::Ollama, "http://127.0.0.1:11434/", true),
            (Provider::Anthropic, "https://api.anthropic.com/", true),
        ] {
            let endpoint = ModelSettings::new(provider, "m").endpoint().unwrap();
            assert_eq!(endpoint.base.as_str(), url);
            assert_eq!(endpoint.official, official);
        }
        let endpoint = ModelSettings::openai("m")
            .base_url("http://127.0.0.1:8000/v1/")
            .endpoint()
            .unwrap();
        assert!(!endpoint.official);
        assert_eq!(
            endpoint.url("chat/completions").as_str(),
            "http://127.0.0.1:8000/v1/chat/completions"
        );
        // Settings made in Rust are checked when they are used.
        let err = ModelSettings::openai("").endpoint().unwrap_err();
        assert_eq!(err.message(), "config.model.name: the model name is empty");
        let err = ModelSettings::openai("m")
            .base_url("ftp://x/")
            .endpoint()
            .unwrap_err();
        assert!(
            err.message()
                .starts_with("config.model.base_url: `ftp://x/`"),
            "{err}"
        );
    }
}
