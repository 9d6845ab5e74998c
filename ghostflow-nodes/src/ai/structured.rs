//! Structured output: the `extract` node, which asks a model for JSON that
//! matches a JSON Schema and checks it, and its typed Rust form
//! [`ExtractAs`], whose output port has the type the schema comes from.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU32;

use ghostflow::PortValue;
use ghostflow::prelude::*;
use serde::Deserializer;
use serde_json::{Value, json};

use super::chat::{Conversation, max_tokens, optional_template, temperature, usage_json};
use super::model::{ChatRequest, Message, ResponseFormat, Usage};
use super::settings::ModelSettings;

/// The most attempts an [`Extract`] may be given.
pub const MAX_EXTRACT_ATTEMPTS: u32 = 20;

/// The most schema problems quoted back to the model (and in the error).
const MAX_PROBLEMS: usize = 12;

/// Asks a chat model for a JSON value matching a JSON Schema, checks the
/// answer, and asks again with the problems when it does not match.
///
/// The request is built as `chat` builds it (the `system` prompt, the
/// `history` input, then the `prompt` input or template; both templates
/// read `data`, `history` and `prompt`) and asks for JSON in each
/// provider's own way: OpenAI-compatible servers get `response_format`
/// with the schema, Ollama its `format`, and Anthropic, which has no such
/// field, the schema in an instruction at the end of the system prompt.
/// Whatever the model answers is checked here: it must parse as JSON (a
/// fenced ```` ```json ```` block is accepted) and match `schema`. An
/// answer that does not is sent back to the model with the problems, up
/// to `max_attempts` answers in all; the last failure is a permanent
/// error listing them. Model errors (429, 5xx) fail the node as `chat`
/// does, for its `retry` policy.
///
/// ```yaml
/// - id: invoice
///   type: extract
///   config:
///     model: { provider: openai, name: gpt-4o-mini, api_key_secret: OPENAI_API_KEY }
///     system: "You read invoices."
///     prompt: "Extract the invoice fields from: {{ data.text }}"
///     schema:
///       type: object
///       properties:
///         number: { type: string }
///         total: { type: number, minimum: 0 }
///       required: [number, total]
///     max_attempts: 3
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = ExtractInput, output = ExtractOutput, category = "ai")]
#[serde(deny_unknown_fields)]
pub struct Extract {
    /// The model: `provider`, `name`, and where and with which key.
    pub model: ModelSettings,
    /// The system prompt, a template reading `data`, `history` and
    /// `prompt`; sent first. An empty result sends none.
    #[serde(
        default,
        deserialize_with = "optional_template",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("x-template" = true))]
    pub system: Option<String>,
    /// The user's message, a template reading `data`, `history` and
    /// `prompt`; the `prompt` input replaces it.
    #[serde(
        default,
        deserialize_with = "optional_template",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("x-template" = true))]
    pub prompt: Option<String>,
    /// The JSON Schema the answer must match (checked when the flow loads).
    #[serde(deserialize_with = "json_schema")]
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub schema: Value,
    /// A name for the schema, sent to providers that take one: letters,
    /// digits, `_` and `-`, at most 64.
    #[serde(default = "default_schema_name", deserialize_with = "schema_name")]
    pub schema_name: String,
    /// How many answers to ask for in all, the first included, before
    /// failing (at most 20).
    #[serde(default = "default_attempts", deserialize_with = "attempts")]
    #[schemars(range(min = 1, max = 20))]
    pub max_attempts: NonZeroU32,
    /// Sampling temperature, from 0 (most predictable) to 2.
    #[serde(
        default,
        deserialize_with = "temperature",
        skip_serializing_if = "Option::is_none"
    )]
    pub temperature: Option<f64>,
    /// The most tokens to generate per answer.
    #[serde(
        default,
        deserialize_with = "max_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_tokens: Option<u32>,
    /// Whether to stream the answers, each piece of text a progress event.
    #[serde(default = "crate::yes")]
    pub stream: bool,
}

/// What an [`Extract`] reads; all optional, but a prompt or a history is
/// needed.
#[derive(Ports, Debug)]
pub struct ExtractInput {
    /// The conversation so far (messages with `role` and `content`).
    pub history: Option<Vec<Message>>,
    /// Any value, readable by the templates as `data`.
    pub data: Option<Value>,
    /// The user's message, in place of the `prompt` template.
    pub prompt: Option<String>,
}

/// What an [`Extract`] gives.
#[derive(Ports, Debug)]
pub struct ExtractOutput {
    /// The answer, a JSON value that matches the schema.
    pub value: Value,
    /// How many answers it took (1 when the first one matched).
    pub attempts: u32,
    /// Tokens used by all the answers, `{input_tokens, output_tokens,
    /// total_tokens}`, or null when the provider did not say.
    pub usage: Value,
}

fn default_schema_name() -> String {
    "output".to_owned()
}

fn default_attempts() -> NonZeroU32 {
    NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN)
}

fn json_schema<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    let schema = Value::deserialize(deserializer)?;
    check_schema(&schema).map_err(serde::de::Error::custom)?;
    Ok(schema)
}

/// Checks that `schema` is an object that compiles as a JSON Schema.
fn check_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    if !schema.is_object() {
        return Err(format!(
            "a JSON Schema is an object, such as `{{type: object, properties: {{...}}}}`; got {}",
            crate::kind(schema)
        ));
    }
    jsonschema::validator_for(schema).map_err(|e| format!("not a valid JSON Schema: {e}"))
}

fn schema_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let name = String::deserialize(deserializer)?;
    check_schema_name(&name).map_err(serde::de::Error::custom)?;
    Ok(name)
}

fn check_schema_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "`{name}`: a schema name has 1 to 64 letters, digits, `_` or `-`"
        ));
    }
    Ok(())
}

fn attempts<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NonZeroU32, D::Error> {
    let n = u32::deserialize(deserializer)?;
    if n == 0 || n > MAX_EXTRACT_ATTEMPTS {
        return Err(serde::de::Error::custom(format!(
            "{n} attempts; give from 1 to {MAX_EXTRACT_ATTEMPTS}"
        )));
    }
    Ok(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

/// Adds `more` to a running usage total; stays `None` until a provider
/// reports some.
pub(crate) fn add_usage(total: &mut Option<Usage>, more: Option<Usage>) {
    if let Some(more) = more {
        *total = Some(total.unwrap_or_default().plus(more));
    }
}

/// The JSON in a model's answer: the whole text, or the inside of one
/// fenced code block around it.
fn parse_answer(text: &str) -> Result<Value, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the answer is empty; answer with a JSON value".to_owned());
    }
    let inner = text
        .strip_prefix("```")
        .and_then(|rest| rest.strip_suffix("```"))
        .map(|body| {
            // The fence's language tag, up to the first line break.
            let body = body.split_once('\n').map_or(body, |(tag, rest)| {
                if tag.trim().chars().all(|c| c.is_ascii_alphanumeric()) {
                    rest
                } else {
                    body
                }
            });
            body.trim()
        })
        .unwrap_or(text);
    serde_json::from_str(inner).map_err(|e| format!("the answer is not JSON ({e})"))
}

/// The ways `value` breaks the schema, worded for the model (at most
/// [`MAX_PROBLEMS`], then how many more).
fn schema_problems(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut more = 0usize;
    for error in validator.iter_errors(value) {
        if problems.len() == MAX_PROBLEMS {
            more += 1;
            continue;
        }
        let at = error.instance_path().as_str();
        problems.push(if at.is_empty() {
            format!("at the top level: {error}")
        } else {
            format!("at `{at}`: {error}")
        });
    }
    if more > 0 {
        problems.push(format!("and {more} more"));
    }
    problems
}

/// The message that asks the model again, with what was wrong.
fn feedback(problems: &[String]) -> String {
    let mut text = String::from(
        "Your answer cannot be used: it must be one JSON value matching the JSON Schema, and nothing else.\nProblems:\n",
    );
    for problem in problems {
        text.push_str("- ");
        text.push_str(problem);
        text.push('\n');
    }
    text.push_str("Answer again with only the corrected JSON value.");
    text
}

/// A value that an [`Extract`] accepted, with what it took.
pub(crate) struct Accepted<R> {
    /// The accepted value.
    pub(crate) value: R,
    /// The answers asked for.
    pub(crate) attempts: u32,
    /// Tokens used by all the answers.
    pub(crate) usage: Option<Usage>,
}

impl Extract {
    /// Asks `model` for JSON matching `schema` (a JSON Schema object).
    pub fn new(model: ModelSettings, schema: Value) -> Self {
        Extract {
            model,
            system: None,
            prompt: None,
            schema,
            schema_name: default_schema_name(),
            max_attempts: default_attempts(),
            temperature: None,
            max_tokens: None,
            stream: true,
        }
    }

    /// This node with a system prompt template.
    #[must_use]
    pub fn system(mut self, template: impl Into<String>) -> Self {
        self.system = Some(template.into());
        self
    }

    /// This node with a user prompt template.
    #[must_use]
    pub fn prompt(mut self, template: impl Into<String>) -> Self {
        self.prompt = Some(template.into());
        self
    }

    /// This node giving up after `n` answers (1 to 20).
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = NonZeroU32::new(n.min(MAX_EXTRACT_ATTEMPTS)).unwrap_or(NonZeroU32::MIN);
        self
    }

    /// This node streaming its answers or not.
    #[must_use]
    pub fn stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// Asks until an answer parses, matches the schema and is taken by
    /// `accept` (which may refuse it with problems of its own), or the
    /// attempts run out.
    pub(crate) async fn ask<R>(
        &self,
        input: ExtractInput,
        ctx: &Context,
        accept: impl Fn(Value) -> Result<R, Vec<String>>,
    ) -> Result<Accepted<R>, NodeError> {
        let validator = check_schema(&self.schema)
            .map_err(|e| NodeError::permanent(format!("config.schema: {e}")))?;
        check_schema_name(&self.schema_name)
            .map_err(|e| NodeError::permanent(format!("config.schema_name: {e}")))?;
        let mut request = ChatRequest {
            messages: Conversation::new(
                self.system.as_deref(),
                self.prompt.as_deref(),
                input.history,
                input.data,
                input.prompt,
            )?
            .messages(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            stop: Vec::new(),
            tools: Vec::new(),
            response_format: Some(ResponseFormat::JsonSchema {
                name: self.schema_name.clone(),
                schema: self.schema.clone(),
            }),
            stream: self.stream,
        };
        let model = self.model.chat_model(ctx)?;
        let mut usage = None;
        let max = self.max_attempts.get();
        let mut last = Vec::new();
        for attempt in 1..=max {
            let mut on_text = |delta: &str| ctx.progress(json!({ "token": delta }));
            let response = model.chat(&request, ctx, &mut on_text).await?;
            add_usage(&mut usage, response.usage);
            let problems = match parse_answer(&response.message.content) {
                Err(problem) => vec![problem],
                Ok(value) => match schema_problems(&validator, &value) {
                    problems if !problems.is_empty() => problems,
                    _ => match accept(value) {
                        Ok(value) => {
                            return Ok(Accepted {
                                value,
                                attempts: attempt,
                                usage,
                            });
                        }
                        Err(problems) => problems,
                    },
                },
            };
            ctx.progress(json!({
                "invalid_answer": { "attempt": attempt, "problems": problems }
            }));
            if attempt < max {
                request
                    .messages
                    .push(Message::assistant(response.message.content));
                request.messages.push(Message::user(feedback(&problems)));
            }
            last = problems;
        }
        Err(NodeError::permanent(format!(
            "no answer matched the schema in {max} attempt{} (max_attempts); the last one: {}",
            if max == 1 { "" } else { "s" },
            last.join("; ")
        )))
    }
}

impl Run for Extract {
    async fn run(&self, input: ExtractInput, ctx: &Context) -> Result<ExtractOutput, NodeError> {
        let accepted = self.ask(input, ctx, Ok).await?;
        Ok(ExtractOutput {
            value: accepted.value,
            attempts: accepted.attempts,
            usage: usage_json(accepted.usage),
        })
    }
}

/// The typed form of [`Extract`], for Rust flows: the schema is `T`'s
/// (from its `JsonSchema`), and the `value` output has type `T`, so the
/// builder checks what it connects to at compile time.
///
/// An answer that matches the schema but does not deserialize as a `T`
/// (serde can be stricter than the schema) counts as invalid and is sent
/// back with serde's reason. Written to a document, it is an `extract`
/// node with `T`'s schema, whose `value` is JSON.
///
/// ```no_run
/// use ghostflow::prelude::*;
/// use ghostflow_nodes::ai::{ExtractAs, ModelSettings};
///
/// /// A city and its country.
/// #[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
/// struct Place {
///     city: String,
///     country: String,
/// }
///
/// let mut b = Flow::builder("where");
/// let text = b.input::<String>("text");
/// let place = b.add(
///     "place",
///     ExtractAs::<Place>::new(ModelSettings::ollama("llama3.2"))
///         .system("Say where the text takes place."),
/// );
/// b.connect(text, place.inp().prompt);
/// let typed: ghostflow::Port<ghostflow::Out, Place> = place.out().value;
/// b.output("place", typed);
/// let flow = b.build().unwrap();
/// ```
#[derive(Node)]
#[node(name = "extract", input = ExtractInput, output = ExtractedAs<T>, category = "ai")]
pub struct ExtractAs<T> {
    /// The untyped node, with `T`'s schema.
    inner: Extract,
    _type: PhantomData<fn() -> T>,
}

/// What an [`ExtractAs`] gives.
#[derive(Ports, Debug)]
pub struct ExtractedAs<T> {
    /// The answer, read as a `T`.
    pub value: T,
    /// How many answers it took (1 when the first one was right).
    pub attempts: u32,
    /// Tokens used by all the answers, or null when the provider did not
    /// say.
    pub usage: Value,
}

impl<T: JsonSchema> ExtractAs<T> {
    /// Asks `model` for a `T`, with `T`'s JSON Schema.
    pub fn new(model: ModelSettings) -> Self {
        let mut schema = schemars::SchemaGenerator::default()
            .into_root_schema_for::<T>()
            .to_value();
        if let Some(object) = schema.as_object_mut() {
            object.remove("$schema");
        }
        let mut inner = Extract::new(model, schema);
        let name: String = T::schema_name()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .take(64)
            .collect();
        if !name.is_empty() {
            inner.schema_name = name;
        }
        ExtractAs {
            inner,
            _type: PhantomData,
        }
    }
}

impl<T> ExtractAs<T> {
    /// This node with a system prompt template.
    #[must_use]
    pub fn system(mut self, template: impl Into<String>) -> Self {
        self.inner = self.inner.system(template);
        self
    }

    /// This node with a user prompt template.
    #[must_use]
    pub fn prompt(mut self, template: impl Into<String>) -> Self {
        self.inner = self.inner.prompt(template);
        self
    }

    /// This node giving up after `n` answers (1 to 20).
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.inner = self.inner.max_attempts(n);
        self
    }

    /// This node streaming its answers or not.
    #[must_use]
    pub fn stream(mut self, stream: bool) -> Self {
        self.inner = self.inner.stream(stream);
        self
    }

    /// The untyped node it runs: its settings, and the schema it asks for.
    pub fn config(&self) -> &Extract {
        &self.inner
    }

    /// The untyped node, to change its settings.
    pub fn config_mut(&mut self) -> &mut Extract {
        &mut self.inner
    }
}

impl<T> Clone for ExtractAs<T> {
    fn clone(&self) -> Self {
        ExtractAs {
            inner: self.inner.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for ExtractAs<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtractAs")
            .field("type", &std::any::type_name::<T>())
            .field("inner", &self.inner)
            .finish()
    }
}

/// Written as the `extract` config it runs.
impl<T> Serialize for ExtractAs<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(serializer)
    }
}

/// The schema of the `extract` config.
impl<T> JsonSchema for ExtractAs<T> {
    fn schema_name() -> Cow<'static, str> {
        Extract::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Extract::json_schema(generator)
    }
}

impl<T: PortValue> Run for ExtractAs<T> {
    async fn run(&self, input: ExtractInput, ctx: &Context) -> Result<ExtractedAs<T>, NodeError> {
        let accepted = self
            .inner
            .ask(input, ctx, |value| {
                serde_json::from_value::<T>(value).map_err(|e| {
                    vec![format!(
                        "it does not read as `{}`: {e}",
                        std::any::type_name::<T>()
                    )]
                })
            })
            .await?;
        Ok(ExtractedAs {
            value: accepted.value,
            attempts: accepted.attempts,
            usage: usage_json(accepted.usage),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(config: Value) -> Result<Extract, String> {
        serde_path_to_error::deserialize::<_, Extract>(config)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    fn model() -> Value {
        json!({"provider": "ollama", "name": "llama3.2"})
    }

    #[test]
    fn configs_are_checked_when_they_load() {
        let node = extract(json!({"model": model(), "schema": {"type": "object"}})).unwrap();
        assert_eq!(node.max_attempts.get(), 3);
        assert_eq!(node.schema_name, "output");
        for (config, expected) in [
            (json!({"model": model()}), ".: missing field `schema`"),
            (
                json!({"model": model(), "schema": "object"}),
                "schema: a JSON Schema is an object",
            ),
            (
                json!({"model": model(), "schema": {"type": "thing"}}),
                "schema: not a valid JSON Schema: ",
            ),
            (
                json!({"model": model(), "schema": {}, "max_attempts": 0}),
                "max_attempts: 0 attempts; give from 1 to 20",
            ),
            (
                json!({"model": model(), "schema": {}, "max_attempts": 21}),
                "max_attempts: 21 attempts",
            ),
            (
                json!({"model": model(), "schema": {}, "schema_name": "a b"}),
                "schema_name: `a b`: a schema name has 1 to 64",
            ),
            (
                json!({"model": model(), "schema": {}, "prompt": "{{ x"}),
                "prompt: syntax error",
            ),
            (
                json!({"model": model(), "schema": {}, "format": "json"}),
                "format: unknown field `format`",
            ),
        ] {
            let err = extract(config.clone()).unwrap_err();
            assert!(
                err.starts_with(expected),
                "{config}: `{err}` should start with `{expected}`"
            );
        }
    }

    #[test]
    fn answers_parse_bare_or_fenced() {
        assert_eq!(parse_answer(" {\"a\": 1} "), Ok(json!({"a": 1})));
        assert_eq!(
            parse_answer("```json\n{\"a\": 1}\n```"),
            Ok(json!({"a": 1}))
        );
        assert_eq!(parse_answer("```\n[1, 2]\n```"), Ok(json!([1, 2])));
        assert_eq!(parse_answer("```{\"a\": 1}```"), Ok(json!({"a": 1})));
        assert!(parse_answer("").unwrap_err().contains("empty"));
        let err = parse_answer("Sure! {\"a\": 1}").unwrap_err();
        assert!(
            err.starts_with("the answer is not JSON (expected value"),
            "{err}"
        );
    }

    #[test]
    fn problems_name_their_place_and_are_bounded() {
        let schema = json!({
            "type": "object",
            "properties": {"age": {"type": "integer"}},
            "required": ["name"],
            "additionalProperties": {"type": "string"}
        });
        let validator = check_schema(&schema).unwrap();
        let problems = schema_problems(&validator, &json!({"age": "x"}));
        assert_eq!(
            problems,
            [
                "at the top level: \"name\" is a required property",
                "at `/age`: \"x\" is not of type \"integer\"",
            ]
        );
        let many: serde_json::Map<String, Value> =
            (0..30).map(|i| (format!("k{i}"), json!(i))).collect();
        let problems = schema_problems(&validator, &json!({"name": "n", "more": many}));
        assert!(problems.len() <= MAX_PROBLEMS + 1, "{problems:?}");
        let problems = schema_problems(&validator, &Value::Object(many.clone()));
        assert_eq!(problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(problems[MAX_PROBLEMS], "and 19 more");
    }

    #[test]
    fn the_typed_form_writes_the_untyped_config() {
        /// A person.
        #[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
        struct Person {
            /// The name.
            name: String,
            /// The age.
            age: u8,
        }
        let node = ExtractAs::<Person>::new(ModelSettings::ollama("m")).max_attempts(5);
        let config = node.config_json().unwrap();
        assert_eq!(config["schema_name"], json!("Person"));
        assert_eq!(config["max_attempts"], json!(5));
        assert_eq!(config["schema"]["required"], json!(["name", "age"]));
        assert!(config["schema"].get("$schema").is_none());
        let back: Extract = serde_json::from_value(config).unwrap();
        assert_eq!(back.schema, node.config().schema);
        let spec = ExtractAs::<Person>::spec();
        assert_eq!(spec.type_name, "extract");
        assert_eq!(spec.outputs[0].type_name, std::any::type_name::<Person>());
        assert_eq!(spec.config_schema, Extract::spec().config_schema);
    }
}
