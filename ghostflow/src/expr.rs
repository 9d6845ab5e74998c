//! Expressions in node configurations: sandboxed templates evaluated per
//! execution.
//!
//! A string value anywhere in a node's config may hold Jinja syntax
//! ([minijinja](https://docs.rs/minijinja)). [`ConfigTemplate::parse`] finds
//! those strings once, when the flow is loaded; [`ConfigTemplate::render`]
//! evaluates them for one execution against a [`Scope`].
//!
//! # What an expression can read
//!
//! | write                          | reads                                                  |
//! |--------------------------------|--------------------------------------------------------|
//! | `input.url`                    | the flow input `url`                                   |
//! | `nodes.fetch.status`           | output port `status` of the upstream node `fetch`      |
//! | `nodes["fetch-user"].body`     | the same with an id that is not a plain name           |
//! | `secrets.API_KEY`              | a secret from the engine's [`Secrets`] provider        |
//! | `env.HOME`                     | an environment variable, if the application allows it  |
//!
//! Names are written out: `input[name]` or `nodes[x].y` are refused when the
//! config is parsed, because every reference is found statically
//! ([`Template::references`]); the loader turns each `nodes.<id>.<port>` into
//! a dependency of the node, so the value is there when the node runs. After
//! the name, anything goes: `nodes.fetch.body.items[0].name`.
//! No other variable exists (`{{ foo }}` is an error at parse time), and an
//! undefined value is an error, not an empty string: use `default` or
//! `is defined` for optional values (`{{ input.limit | default(10) }}`).
//!
//! # Typed values and text
//!
//! - A string that is exactly one `{{ expression }}` (whitespace around it is
//!   allowed) gives the value of the expression with its JSON type:
//!   `count: "{{ input.n + 1 }}"` is a number, `"{{ nodes.fetch.body }}"` may
//!   be an object, `"{{ input.a > 2 }}"` a boolean.
//! - Any other string with `{{ }}`, `{% %}` or `{# #}` renders as text (a
//!   string): `"Bearer {{ secrets.TOKEN }}"`,
//!   `"{% for t in input.tags %}#{{ t }} {% endfor %}"`.
//! - A string without any of these is left alone.
//!
//! A literal `{{` is written `{{ '{{' }}`, or inside a raw block:
//! `"{% raw %}{{ not an expression }}{% endraw %}"` renders as
//! `{{ not an expression }}`. A lone `{` or `}` needs nothing.
//!
//! Filters, tests and operators are minijinja's built-ins (`upper`,
//! `default`, `length`, `tojson`, `join`, `replace`, `urlencode`, `int`,
//! `round`, `selectattr`, `~`, `in`, …), without the ones that have no place
//! here: `debug()` (it would print every value in scope, secrets included),
//! `namespace()`, `{% macro %}`, and `{% include %}`, `{% import %}`,
//! `{% extends %}` (there are no other templates to load).
//!
//! # Sandbox and limits
//!
//! Expressions cannot reach files, the network, processes or the
//! environment (except the variables the application allowed, see
//! [`EnvAccess`]). Each render is bounded:
//!
//! - **Time and memory:** a budget of [`FUEL`] steps (minijinja's fuel). Every
//!   instruction costs one step and building strings and lists costs fuel in
//!   proportion to their size, checked before large allocations, so
//!   `"x" * 1000000000` or nested loops over `range(100000)` stop at once with
//!   "expression ran too long". `range` refuses more than 100 000 items.
//! - **Output:** text and typed results larger than [`MAX_OUTPUT_BYTES`]
//!   (1 MiB) fail with "expression output is larger than 1 MiB"; text is
//!   written into a capped buffer, never built in full first.
//! - **Text conversions:** filters and tests that turn a list or map into
//!   text (`string`, `join`, `tojson`, `upper`, `format`, `startingwith`, …),
//!   and printing one, refuse values whose text would exceed 2 MiB (1 MiB
//!   for printing) before building it.
//! - **Size of the source:** at most [`MAX_TOKENS`] tokens of code per string,
//!   which also bounds how deeply values can nest; nesting of statements is
//!   limited to [`RECURSION_LIMIT`].
//!
//! Known gap: the `~` operator and `in` against a string turn a list into
//! text without asking the filters above. A list that repeats one large
//! string many times (`[s] * 1000` inside another `* 1000`) is small in
//! memory but huge as text; fuel stops such an expression only after the
//! text was built. Flows from untrusted authors should run in a process with
//! a memory limit.
//!
//! # Secrets
//!
//! A render records every secret it read in the [`Scope`]
//! ([`Scope::used_secrets`]), also when it fails, so the caller can redact
//! them from errors, events and stored outputs. Error messages never contain
//! a secret value: when an expression that read a secret fails inside the
//! template engine, the engine's detail text (which may quote values) is
//! left out and only the kind of error and its position remain.
//!
//! # Example
//!
//! ```
//! use ghostflow::MapSecrets;
//! use ghostflow::expr::{ConfigTemplate, Scope};
//! use serde_json::json;
//!
//! let config = json!({
//!     "url": "https://api.example.com/users/{{ input.user_id }}",
//!     "headers": { "Authorization": "Bearer {{ secrets.API_KEY }}" },
//!     "retries": "{{ input.retries | default(3) }}",
//!     "method": "GET",
//! });
//! let template = ConfigTemplate::parse(&config).expect("valid expressions");
//! assert!(!template.is_static());
//!
//! let inputs = json!({ "user_id": 42 });
//! let secrets = MapSecrets::new().with("API_KEY", "k-123");
//! let scope = Scope::new(inputs.as_object().unwrap(), &secrets);
//! let rendered = template.render(&scope).expect("renders");
//! assert_eq!(rendered["url"], "https://api.example.com/users/42");
//! assert_eq!(rendered["retries"], 3);
//! assert_eq!(rendered["method"], "GET");
//! assert_eq!(scope.used_secrets().len(), 1);
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::io;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use minijinja::value::{Rest, ValueKind, ValueOrKwargs};
use minijinja::{AutoEscape, Environment, State, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::context::{Secret, Secrets};

/// The fuel budget of one render: each instruction costs one step, and
/// building strings and lists costs in proportion to their size.
pub const FUEL: u64 = 500_000;

/// The largest output a render may produce: the text of a text template, or
/// the JSON size of a typed value.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// How deeply statements (`if`, `for`, recursive loops) may nest at run time.
pub const RECURSION_LIMIT: usize = 100;

/// The most tokens of code (inside `{{ }}` and `{% %}`) one string may hold.
///
/// minijinja parses and evaluates chains like `a.b.c…`, `x + x + …` or
/// `not not …` recursively; this keeps them shallow enough for a 2 MiB
/// thread stack even in debug builds.
pub const MAX_TOKENS: usize = 1024;

/// The largest text a filter may make from a list or map.
const MAX_TEXT_BYTES: usize = 2 << 20;

/// How deeply values may nest when they cross into or out of the engine.
const MAX_DEPTH: usize = 128;

/// The largest `indent` accepted by `tojson`.
const MAX_JSON_INDENT: usize = 16;

/// The formatter's error for a value too large to print.
const PRINT_TOO_LARGE: &str = "value is larger than 1 MiB as text";

/// The variables an expression may read.
const ROOTS: [&str; 4] = ["input", "nodes", "secrets", "env"];

/// What an expression reads, found statically when it is parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reference {
    /// A flow input: `input.<name>`.
    Input(String),
    /// An output port of an upstream node: `nodes.<node>.<port>`.
    Node {
        /// The node id.
        node: String,
        /// The output port.
        port: String,
    },
    /// A secret: `secrets.<name>`.
    Secret(String),
    /// An environment variable: `env.<name>`.
    Env(String),
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn seg(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
            let plain = name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if plain {
                write!(f, ".{name}")
            } else {
                write!(f, "[{name:?}]")
            }
        }
        match self {
            Reference::Input(name) => {
                f.write_str("input")?;
                seg(f, name)
            }
            Reference::Node { node, port } => {
                f.write_str("nodes")?;
                seg(f, node)?;
                seg(f, port)
            }
            Reference::Secret(name) => {
                f.write_str("secrets")?;
                seg(f, name)
            }
            Reference::Env(name) => {
                f.write_str("env")?;
                seg(f, name)
            }
        }
    }
}

/// Which environment variables expressions may read with `env.<NAME>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EnvAccess {
    /// None (the default).
    #[default]
    None,
    /// Only these names.
    Only(Vec<String>),
    /// All of them.
    All,
}

impl EnvAccess {
    /// Whether `name` may be read.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            EnvAccess::None => false,
            EnvAccess::Only(names) => names.iter().any(|n| n == name),
            EnvAccess::All => true,
        }
    }
}

/// The outputs of upstream nodes, as a render sees them.
pub trait NodeOutputs {
    /// The value on output `port` of node `node`, if it has one.
    fn output(&self, node: &str, port: &str) -> Option<&Value>;
}

/// No node outputs at all.
impl NodeOutputs for () {
    fn output(&self, _node: &str, _port: &str) -> Option<&Value> {
        None
    }
}

/// Node id, then port name.
impl<S: BuildHasher> NodeOutputs for HashMap<String, Map<String, Value>, S> {
    fn output(&self, node: &str, port: &str) -> Option<&Value> {
        self.get(node)?.get(port)
    }
}

/// Node id, then port name.
impl NodeOutputs for BTreeMap<String, Map<String, Value>> {
    fn output(&self, node: &str, port: &str) -> Option<&Value> {
        self.get(node)?.get(port)
    }
}

/// What a render can see: flow inputs, upstream node outputs, secrets and the
/// environment policy. It also records the secrets that renders read.
pub struct Scope<'a> {
    inputs: &'a Map<String, Value>,
    nodes: &'a dyn NodeOutputs,
    secrets: &'a dyn Secrets,
    env: EnvAccess,
    used: RefCell<Vec<(String, Secret)>>,
}

impl fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("inputs", &self.inputs.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets)
            .field("env", &self.env)
            .field("used_secrets", &self.used.borrow().len())
            .finish_non_exhaustive()
    }
}

impl<'a> Scope<'a> {
    /// A scope with these inputs and secrets, no node outputs and no access
    /// to the environment.
    pub fn new(inputs: &'a Map<String, Value>, secrets: &'a dyn Secrets) -> Self {
        Scope {
            inputs,
            nodes: &(),
            secrets,
            env: EnvAccess::None,
            used: RefCell::new(Vec::new()),
        }
    }

    /// Sets the outputs of upstream nodes.
    #[must_use]
    pub fn with_nodes(mut self, nodes: &'a dyn NodeOutputs) -> Self {
        self.nodes = nodes;
        self
    }

    /// Sets which environment variables may be read.
    #[must_use]
    pub fn with_env(mut self, env: EnvAccess) -> Self {
        self.env = env;
        self
    }

    /// Every secret that renders with this scope have read so far, once
    /// each, including renders that failed.
    pub fn used_secrets(&self) -> Vec<Secret> {
        self.used.borrow().iter().map(|(_, s)| s.clone()).collect()
    }

    fn record_secret(&self, name: &str, secret: &Secret) {
        let mut used = self.used.borrow_mut();
        if !used.iter().any(|(n, _)| n == name) {
            used.push((name.to_owned(), secret.clone()));
        }
    }
}

/// Why an expression could not be parsed or rendered.
///
/// Positions are byte offsets into the string that holds the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExprError {
    /// The template syntax is wrong.
    #[error("syntax error{}: {message}", at(span))]
    Syntax {
        /// What is wrong.
        message: String,
        /// Where, if known.
        span: Option<Range<usize>>,
    },
    /// A statement that expressions do not offer.
    #[error(
        "`{{% {statement} %}}` is not available in expressions{}: {}",
        at(span),
        unsupported_reason(statement)
    )]
    Unsupported {
        /// The statement, like `include`.
        statement: String,
        /// Where, if known.
        span: Option<Range<usize>>,
    },
    /// A variable other than `input`, `nodes`, `secrets` and `env`.
    #[error(
        "unknown variable `{name}`{}; expressions can read input, nodes, secrets and env",
        at(span)
    )]
    UnknownVariable {
        /// The variable.
        name: String,
        /// Where, if known.
        span: Option<Range<usize>>,
    },
    /// `input`, `nodes`, `secrets` or `env` without a name written out.
    #[error("{}{}", reference_help(root), at(span))]
    BadReference {
        /// `input`, `nodes`, `secrets` or `env`.
        root: String,
        /// Where.
        span: Option<Range<usize>>,
    },
    /// The source is longer than [`MAX_TOKENS`] tokens of code.
    #[error("expression is too long: more than {MAX_TOKENS} tokens of code")]
    TooManyTokens,
    /// A flow input that was not given.
    #[error("input `{name}` was not given{}", at(span))]
    MissingInput {
        /// The input.
        name: String,
        /// Where it is read.
        span: Option<Range<usize>>,
    },
    /// An upstream node output that is not there.
    #[error("node `{node}` has no output `{port}` in this execution{}", at(span))]
    MissingNodeOutput {
        /// The node id.
        node: String,
        /// The port.
        port: String,
        /// Where it is read.
        span: Option<Range<usize>>,
    },
    /// A secret the provider does not know.
    #[error("secret `{name}` is not set{}", at(span))]
    MissingSecret {
        /// The secret's name.
        name: String,
        /// Where it is read.
        span: Option<Range<usize>>,
    },
    /// An allowed environment variable that is not set.
    #[error("environment variable `{name}` is not set{}", at(span))]
    MissingEnv {
        /// The variable.
        name: String,
        /// Where it is read.
        span: Option<Range<usize>>,
    },
    /// An environment variable that the application did not allow.
    #[error(
        "environment variable `{name}` is not allowed{}; the application must allow it",
        at(span)
    )]
    EnvNotAllowed {
        /// The variable.
        name: String,
        /// Where it is read.
        span: Option<Range<usize>>,
    },
    /// Evaluation failed: a type error, an undefined value, a bad argument.
    #[error("{message}{}", at(span))]
    Eval {
        /// What failed. Never contains a secret value.
        message: String,
        /// Where, if known.
        span: Option<Range<usize>>,
    },
    /// The render used up its [`FUEL`].
    #[error(
        "expression ran too long: it used up its fuel of {FUEL} steps (building large values uses fuel too)"
    )]
    TooLong,
    /// The output is larger than [`MAX_OUTPUT_BYTES`].
    #[error("expression output is larger than 1 MiB")]
    OutputTooLarge,
    /// A typed result has no JSON form.
    #[error("the expression's value cannot be turned into JSON: {message}")]
    NotJson {
        /// Why.
        message: String,
    },
}

fn at(span: &Option<Range<usize>>) -> String {
    match span {
        Some(span) => format!(" at position {}", span.start),
        None => String::new(),
    }
}

fn unsupported_reason(statement: &str) -> &'static str {
    match statement {
        "include" | "import" | "from" | "extends" | "block" => {
            "expressions cannot load other templates (there is no loader)"
        }
        _ => "expressions have no macros",
    }
}

fn reference_help(root: &str) -> &'static str {
    match root {
        "input" => {
            "`input` must be followed by the name of an input, written out: `input.url` or `input[\"my-input\"]`"
        }
        "nodes" => {
            "`nodes` must be followed by a node id and an output port, written out: `nodes.fetch.status` or `nodes[\"fetch-user\"].body`"
        }
        "secrets" => {
            "`secrets` must be followed by the name of a secret, written out: `secrets.API_KEY`"
        }
        _ => {
            "`env` must be followed by the name of an environment variable, written out: `env.HOME`"
        }
    }
}

impl ExprError {
    /// Where in the string the problem is (byte offsets), if known.
    pub fn span(&self) -> Option<Range<usize>> {
        match self {
            ExprError::Syntax { span, .. }
            | ExprError::Unsupported { span, .. }
            | ExprError::UnknownVariable { span, .. }
            | ExprError::BadReference { span, .. }
            | ExprError::MissingInput { span, .. }
            | ExprError::MissingNodeOutput { span, .. }
            | ExprError::MissingSecret { span, .. }
            | ExprError::MissingEnv { span, .. }
            | ExprError::EnvNotAllowed { span, .. }
            | ExprError::Eval { span, .. } => span.clone(),
            ExprError::TooManyTokens
            | ExprError::TooLong
            | ExprError::OutputTooLarge
            | ExprError::NotJson { .. } => None,
        }
    }

    /// The byte offset in the string where the problem starts, if known.
    pub fn position(&self) -> Option<usize> {
        self.span().map(|s| s.start)
    }
}

// ---------------------------------------------------------------------------
// The sandboxed environment.

static ENV: LazyLock<Environment<'static>> = LazyLock::new(sandbox);

fn sandbox() -> Environment<'static> {
    use minijinja::filters;

    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    // Debug mode gives error positions and names undefined values in
    // messages; its snapshot of the variables never leaves this module.
    env.set_debug(true);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // `debug()` prints every value in scope, secrets included; `namespace()`
    // is the only way to carry values from one loop iteration to the next,
    // and so to nest values without bound.
    env.remove_global("debug");
    env.remove_global("namespace");
    // Printing a list walks all of it even after the output is full; refuse
    // one whose text is over the limit before writing it. This also covers
    // output captured by `{% set %}` and `{% filter %}` blocks. A custom
    // formatter has to refuse undefined values itself.
    env.set_formatter(|out, state, value| {
        if value.is_undefined() {
            return Err(minijinja::Error::from(minijinja::ErrorKind::UndefinedError));
        }
        if is_container(value) && text_size(value, MAX_OUTPUT_BYTES).is_none() {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                PRINT_TOO_LARGE,
            ));
        }
        minijinja::escape_formatter(out, state, value)
    });

    guard_filter(
        &mut env,
        "string",
        minijinja::Value::from_function(filters::string),
        no_check,
    );
    guard_filter(
        &mut env,
        "join",
        minijinja::Value::from_function(filters::join),
        no_check,
    );
    guard_filter(
        &mut env,
        "tojson",
        minijinja::Value::from_function(filters::tojson),
        check_tojson,
    );
    guard_filter(
        &mut env,
        "pprint",
        minijinja::Value::from_function(filters::pprint),
        no_check,
    );
    guard_filter(
        &mut env,
        "upper",
        minijinja::Value::from_function(filters::upper),
        no_check,
    );
    guard_filter(
        &mut env,
        "lower",
        minijinja::Value::from_function(filters::lower),
        no_check,
    );
    guard_filter(
        &mut env,
        "title",
        minijinja::Value::from_function(filters::title),
        no_check,
    );
    guard_filter(
        &mut env,
        "capitalize",
        minijinja::Value::from_function(filters::capitalize),
        no_check,
    );
    guard_filter(
        &mut env,
        "trim",
        minijinja::Value::from_function(filters::trim),
        no_check,
    );
    guard_filter(
        &mut env,
        "replace",
        minijinja::Value::from_function(filters::replace),
        no_check,
    );
    guard_filter(
        &mut env,
        "split",
        minijinja::Value::from_function(filters::split),
        no_check,
    );
    guard_filter(
        &mut env,
        "lines",
        minijinja::Value::from_function(filters::lines),
        no_check,
    );
    guard_filter(
        &mut env,
        "urlencode",
        minijinja::Value::from_function(filters::urlencode),
        no_check,
    );
    guard_filter(
        &mut env,
        "format",
        minijinja::Value::from_function(filters::format),
        no_check,
    );
    guard_filter(
        &mut env,
        "safe",
        minijinja::Value::from_function(filters::safe),
        no_check,
    );
    guard_filter(
        &mut env,
        "escape",
        minijinja::Value::from_function(filters::escape),
        no_check,
    );
    guard_filter(
        &mut env,
        "e",
        minijinja::Value::from_function(filters::escape),
        no_check,
    );
    guard_filter(
        &mut env,
        "indent",
        minijinja::Value::from_function(filters::indent),
        check_indent,
    );
    guard_test(
        &mut env,
        "startingwith",
        minijinja::Value::from_function(minijinja::tests::is_startingwith),
    );
    guard_test(
        &mut env,
        "endingwith",
        minijinja::Value::from_function(minijinja::tests::is_endingwith),
    );
    guard_test(
        &mut env,
        "in",
        minijinja::Value::from_function(minijinja::tests::is_in),
    );
    env
}

/// Replaces test `name` with `inner` behind the same check as
/// [`guard_filter`]: these tests turn their arguments into text.
fn guard_test(env: &mut Environment<'static>, name: &'static str, inner: minijinja::Value) {
    env.add_test(
        name,
        move |state: &mut State<'_, '_>, args: Rest<ValueOrKwargs>| {
            let args = args.into_values();
            check_text_sizes(&args)?;
            inner.call(state, &args).map(|v| v.is_true())
        },
    );
}

fn check_text_sizes(args: &[minijinja::Value]) -> Result<(), minijinja::Error> {
    for arg in args {
        if is_container(arg) && text_size(arg, MAX_TEXT_BYTES).is_none() {
            return Err(too_large_for_text());
        }
    }
    Ok(())
}

type ArgCheck = fn(&[minijinja::Value]) -> Result<(), minijinja::Error>;

fn no_check(_: &[minijinja::Value]) -> Result<(), minijinja::Error> {
    Ok(())
}

/// Replaces filter `name` with `inner` behind a check that no argument is a
/// list or map whose text would exceed [`MAX_TEXT_BYTES`], plus `check`.
fn guard_filter(
    env: &mut Environment<'static>,
    name: &'static str,
    inner: minijinja::Value,
    check: ArgCheck,
) {
    env.add_filter(
        name,
        move |state: &mut State<'_, '_>, args: Rest<ValueOrKwargs>| {
            let args = args.into_values();
            check_text_sizes(&args)?;
            check(&args)?;
            inner.call(state, &args)
        },
    );
}

fn too_large_for_text() -> minijinja::Error {
    minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        "value is too large to turn into text (more than 2 MiB)",
    )
}

fn is_container(value: &minijinja::Value) -> bool {
    matches!(
        value.kind(),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable
    ) && !value.is_kwargs()
}

/// The named or `position`-th positional argument (after the value).
fn argument(args: &[minijinja::Value], position: usize, name: &str) -> Option<minijinja::Value> {
    if let Some(kwargs) = args.last().filter(|a| a.is_kwargs())
        && let Ok(value) = kwargs.get_attr(name)
        && !value.is_undefined()
    {
        return Some(value);
    }
    args.get(position).filter(|a| !a.is_kwargs()).cloned()
}

fn check_tojson(args: &[minijinja::Value]) -> Result<(), minijinja::Error> {
    match argument(args, 1, "indent").and_then(|v| v.as_usize()) {
        Some(indent) if indent > MAX_JSON_INDENT => Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "tojson indent must be at most 16",
        )),
        _ => Ok(()),
    }
}

fn check_indent(args: &[minijinja::Value]) -> Result<(), minijinja::Error> {
    let width = argument(args, 1, "width")
        .and_then(|v| v.as_usize())
        .unwrap_or(4);
    let Some(value) = args.first() else {
        return Ok(());
    };
    let (len, lines) = match value.as_str() {
        Some(s) => (s.len(), s.bytes().filter(|&b| b == b'\n').count() + 1),
        None => match text_size(value, MAX_TEXT_BYTES) {
            Some(n) => (n, n + 1),
            None => return Err(too_large_for_text()),
        },
    };
    let total = lines.saturating_mul(width).saturating_add(len);
    if total > MAX_TEXT_BYTES {
        return Err(too_large_for_text());
    }
    Ok(())
}

/// An upper bound on the length of `value` as text, or `None` if it is
/// larger than `limit`. Visits at most about `limit` items.
fn text_size(value: &minijinja::Value, limit: usize) -> Option<usize> {
    fn walk(value: &minijinja::Value, budget: &mut usize, depth: usize) -> bool {
        fn charge(n: usize, budget: &mut usize) -> bool {
            match budget.checked_sub(n) {
                Some(rest) => {
                    *budget = rest;
                    true
                }
                None => false,
            }
        }
        // Values cannot nest deeper than the code has tokens.
        if depth > MAX_TOKENS {
            return false;
        }
        match value.kind() {
            ValueKind::String => charge(value.as_str().map_or(0, str::len) * 2 + 2, budget),
            ValueKind::Bytes => charge(value.as_bytes().map_or(0, <[u8]>::len) * 4 + 3, budget),
            ValueKind::Seq | ValueKind::Iterable => {
                let Ok(items) = value.try_iter() else {
                    return charge(32, budget);
                };
                if !charge(2, budget) {
                    return false;
                }
                for item in items {
                    if !charge(2, budget) || !walk(&item, budget, depth + 1) {
                        return false;
                    }
                }
                true
            }
            ValueKind::Map => {
                let Ok(keys) = value.try_iter() else {
                    return charge(32, budget);
                };
                if !charge(2, budget) {
                    return false;
                }
                for key in keys {
                    if !charge(4, budget) || !walk(&key, budget, depth + 1) {
                        return false;
                    }
                    let item = value.get_item(&key).unwrap_or_default();
                    if !walk(&item, budget, depth + 1) {
                        return false;
                    }
                }
                true
            }
            _ => charge(48, budget),
        }
    }
    let mut budget = limit;
    walk(value, &mut budget, 0).then(|| limit - budget)
}

// ---------------------------------------------------------------------------
// Scanning the code inside `{{ }}` and `{% %}`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'s> {
    Ident(&'s str),
    Str { text: &'s str, escaped: bool },
    Num,
    Punct(&'s str),
}

#[derive(Debug, Clone)]
struct Token<'s> {
    tok: Tok<'s>,
    span: Range<usize>,
}

/// Whether `source` contains template syntax at all.
fn has_template_syntax(source: &str) -> bool {
    source.contains("{{") || source.contains("{%") || source.contains("{#")
}

/// The tokens of each code region (`{{ }}`, `{% %}`) of a template that
/// minijinja already accepted. Comments and raw blocks are skipped.
fn scan(src: &str) -> Vec<Vec<Token<'_>>> {
    let bytes = src.as_bytes();
    let mut regions = Vec::new();
    let mut pos = 0;
    while let Some((start, marker)) = find_marker(bytes, pos) {
        let mut body = start + 2;
        if matches!(bytes.get(body), Some(b'-' | b'+')) {
            body += 1;
        }
        match marker {
            b'#' => pos = find(bytes, body, b"#}").map_or(bytes.len(), |end| end + 2),
            b'%' if let Some(after) = basic_tag(src, body, "raw") => pos = skip_raw(src, after),
            _ => {
                let end: &[u8] = if marker == b'{' { b"}}" } else { b"%}" };
                let (tokens, next) = lex_code(src, body, end);
                regions.push(tokens);
                pos = next;
            }
        }
    }
    regions
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn find_marker(bytes: &[u8], from: usize) -> Option<(usize, u8)> {
    let mut i = from;
    while i + 1 < bytes.len() {
        if bytes[i] == b'{' && matches!(bytes[i + 1], b'{' | b'%' | b'#') {
            return Some((i, bytes[i + 1]));
        }
        i += 1;
    }
    None
}

/// If `src[at..]` is ` name %}` (with optional whitespace and `-`/`+`
/// before `%}`), the offset after `%}`.
fn basic_tag(src: &str, at: usize, name: &str) -> Option<usize> {
    let rest = src.get(at..)?;
    let after_ws = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let after_name = after_ws.strip_prefix(name)?;
    let mut tail = after_name.trim_start_matches(|c: char| c.is_ascii_whitespace());
    if let Some(t) = tail.strip_prefix(['-', '+']) {
        tail = t;
    }
    let tail = tail.strip_prefix("%}")?;
    Some(src.len() - tail.len())
}

/// The offset after the `{% endraw %}` that closes a raw block starting at
/// `from`.
fn skip_raw(src: &str, from: usize) -> usize {
    let bytes = src.as_bytes();
    let mut pos = from;
    while let Some(open) = find(bytes, pos, b"{%") {
        let mut body = open + 2;
        if matches!(bytes.get(body), Some(b'-' | b'+')) {
            body += 1;
        }
        if let Some(after) = basic_tag(src, body, "endraw") {
            return after;
        }
        pos = open + 2;
    }
    bytes.len()
}

/// Tokens from `start` up to the closing `end` marker at bracket depth 0;
/// returns them and the offset after the marker.
fn lex_code<'s>(src: &'s str, start: usize, end: &[u8]) -> (Vec<Token<'s>>, usize) {
    let b = src.as_bytes();
    let mut tokens = Vec::new();
    let mut depth: isize = 0;
    let mut i = start;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return (tokens, i);
        }
        if depth == 0 {
            if matches!(b[i], b'-' | b'+') && b[i + 1..].starts_with(end) {
                return (tokens, i + 1 + end.len());
            }
            if b[i..].starts_with(end) {
                return (tokens, i + end.len());
            }
        }
        let from = i;
        let tok = match b[i] {
            _ if matches!(
                b.get(i..i + 2),
                Some(b"//" | b"**" | b"==" | b"!=" | b">=" | b"<=")
            ) =>
            {
                i += 2;
                Tok::Punct(&src[from..i])
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                i += 1;
                Tok::Punct(&src[from..i])
            }
            b')' | b']' | b'}' => {
                depth -= 1;
                i += 1;
                Tok::Punct(&src[from..i])
            }
            quote @ (b'\'' | b'"') => {
                i += 1;
                let text_start = i;
                let mut escaped = false;
                while i < b.len() && b[i] != quote {
                    if b[i] == b'\\' {
                        escaped = true;
                        i += 1;
                    }
                    i += 1;
                }
                let text_end = i.min(b.len());
                i = (i + 1).min(b.len());
                Tok::Str {
                    text: src.get(text_start..text_end).unwrap_or(""),
                    escaped,
                }
            }
            c if c.is_ascii_digit() => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
                {
                    i += 1;
                }
                Tok::Num
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                Tok::Ident(&src[from..i])
            }
            _ => {
                i += src
                    .get(i..)
                    .and_then(|rest| rest.chars().next())
                    .map_or(1, char::len_utf8);
                Tok::Punct(src.get(from..i).unwrap_or(""))
            }
        };
        tokens.push(Token { tok, span: from..i });
    }
}

/// Whether the identifier at `k` is read as a variable (not an attribute, a
/// filter or a test name).
fn is_variable(tokens: &[Token<'_>], k: usize) -> bool {
    let prev = |n: usize| k.checked_sub(n).map(|i| tokens[i].tok);
    match prev(1) {
        Some(Tok::Punct(".") | Tok::Punct("|") | Tok::Ident("is")) => false,
        Some(Tok::Ident("not")) => prev(2) != Some(Tok::Ident("is")),
        _ => true,
    }
}

#[derive(Debug, Clone)]
struct Occurrence {
    reference: usize,
    span: Range<usize>,
}

/// Finds every `input`/`nodes`/`secrets`/`env` reference and checks that
/// each is followed by static names.
fn references(regions: &[Vec<Token<'_>>]) -> Result<(Vec<Reference>, Vec<Occurrence>), ExprError> {
    let mut refs: Vec<Reference> = Vec::new();
    let mut occurrences = Vec::new();
    for tokens in regions {
        for (k, token) in tokens.iter().enumerate() {
            let Tok::Ident(root) = token.tok else {
                continue;
            };
            if !ROOTS.contains(&root) || !is_variable(tokens, k) {
                continue;
            }
            // A keyword argument of the same name: `f(input=1)`.
            let next = tokens.get(k + 1).map(|t| t.tok);
            let prev = k.checked_sub(1).map(|i| tokens[i].tok);
            if next == Some(Tok::Punct("="))
                && matches!(prev, Some(Tok::Punct("(") | Tok::Punct(",")))
            {
                continue;
            }
            let needed = if root == "nodes" { 2 } else { 1 };
            let mut names = Vec::with_capacity(needed);
            let mut j = k + 1;
            let mut end = token.span.end;
            while names.len() < needed {
                let at = |n: usize| tokens.get(j + n).map(|t| t.tok);
                match (at(0), at(1), at(2)) {
                    (Some(Tok::Punct(".")), Some(Tok::Ident(name)), _) => {
                        names.push(name.to_owned());
                        end = tokens[j + 1].span.end;
                        j += 2;
                    }
                    (
                        Some(Tok::Punct("[")),
                        Some(Tok::Str {
                            text,
                            escaped: false,
                        }),
                        Some(Tok::Punct("]")),
                    ) if !text.is_empty() => {
                        names.push(text.to_owned());
                        end = tokens[j + 2].span.end;
                        j += 3;
                    }
                    _ => {
                        return Err(ExprError::BadReference {
                            root: root.to_owned(),
                            span: Some(token.span.start..end),
                        });
                    }
                }
            }
            let mut names = names.into_iter();
            let mut name = || names.next().unwrap_or_default();
            let reference = match root {
                "input" => Reference::Input(name()),
                "nodes" => Reference::Node {
                    node: name(),
                    port: name(),
                },
                "secrets" => Reference::Secret(name()),
                _ => Reference::Env(name()),
            };
            let index = match refs.iter().position(|r| *r == reference) {
                Some(index) => index,
                None => {
                    refs.push(reference);
                    refs.len() - 1
                }
            };
            occurrences.push(Occurrence {
                reference: index,
                span: token.span.start..end,
            });
        }
    }
    Ok((refs, occurrences))
}

/// Maps a minijinja error from compiling a template.
fn syntax_error(err: &minijinja::Error, offset: usize) -> ExprError {
    let span = err.range().map(|r| r.start + offset..r.end + offset);
    let detail = err.detail().unwrap_or_default();
    if let Some(statement) = detail.strip_prefix("unknown statement ")
        && matches!(
            statement,
            "include" | "import" | "from" | "extends" | "block" | "macro" | "call"
        )
    {
        return ExprError::Unsupported {
            statement: statement.to_owned(),
            span,
        };
    }
    let message = match err.kind() {
        minijinja::ErrorKind::SyntaxError => detail.to_owned(),
        kind if detail.is_empty() => kind.to_string(),
        kind => format!("{kind}: {detail}"),
    };
    ExprError::Syntax { message, span }
}

// ---------------------------------------------------------------------------
// Templates that nodes render themselves.

/// A text template that a node renders with its own variables, such as the
/// `template` node's `data` input: the same sandbox and limits as
/// expressions, but any variable name may be read (an undefined one is an
/// error), and it always renders to a string.
///
/// ```
/// use ghostflow::expr::TextTemplate;
///
/// let t = TextTemplate::parse("Hello {{ data.name | upper }}!").unwrap();
/// let text = t.render(&serde_json::json!({ "data": { "name": "Ada" } })).unwrap();
/// assert_eq!(text, "Hello ADA!");
/// assert!(t.render(&serde_json::json!({})).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct TextTemplate {
    source: Arc<str>,
}

impl TextTemplate {
    /// Parses a template.
    ///
    /// # Errors
    /// A syntax error (with its position), a statement expressions do not
    /// offer, or more than [`MAX_TOKENS`] tokens of code.
    pub fn parse(source: &str) -> Result<TextTemplate, ExprError> {
        if has_template_syntax(source) {
            let regions = scan(source);
            if regions.iter().map(Vec::len).sum::<usize>() > MAX_TOKENS {
                return Err(ExprError::TooManyTokens);
            }
            ENV.template_from_str(source)
                .map_err(|e| syntax_error(&e, 0))?;
        }
        Ok(TextTemplate {
            source: source.into(),
        })
    }

    /// The template's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders with the members of `context` (a JSON object) as variables.
    ///
    /// # Errors
    /// An undefined variable, a type error, or a limit ([`FUEL`],
    /// [`MAX_OUTPUT_BYTES`]).
    pub fn render(&self, context: &Value) -> Result<String, ExprError> {
        if !has_template_syntax(&self.source) {
            return Ok(self.source.to_string());
        }
        let context = from_json(context, 0).ok_or_else(|| ExprError::Eval {
            message: "the template's data is nested too deeply".to_owned(),
            span: None,
        })?;
        let template = ENV
            .template_from_str(&self.source)
            .map_err(|e| syntax_error(&e, 0))?;
        let mut out = CappedWriter::default();
        let result = template.render_captured_to(context, &mut out);
        if out.overflow {
            return Err(ExprError::OutputTooLarge);
        }
        if let Err(err) = result {
            use minijinja::ErrorKind as K;
            let span = err.range();
            return Err(match err.kind() {
                K::OutOfFuel => ExprError::TooLong,
                K::SyntaxError => syntax_error(&err, 0),
                _ if err.detail() == Some(PRINT_TOO_LARGE) => ExprError::OutputTooLarge,
                kind => ExprError::Eval {
                    message: match err.detail() {
                        Some(detail) => format!("{kind}: {detail}"),
                        None => kind.to_string(),
                    },
                    span,
                },
            });
        }
        Ok(String::from_utf8_lossy(&out.buf).into_owned())
    }
}

// ---------------------------------------------------------------------------
// Templates.

/// One string of a config, parsed: a literal, one whole expression (typed
/// value), or a text template.
#[derive(Debug, Clone)]
pub struct Template {
    source: Box<str>,
    kind: Kind,
    references: Vec<Reference>,
    occurrences: Vec<Occurrence>,
}

#[derive(Debug, Clone)]
enum Kind {
    /// No template syntax: the string as it is.
    Literal,
    /// Exactly one `{{ }}`: the range of the expression inside it.
    Expression(Range<usize>),
    /// Anything else: renders to a string.
    Text,
}

/// What a render prepared: the variables and what was missing.
struct Prepared {
    context: minijinja::Value,
    missing: Vec<bool>,
    read_secret: bool,
}

impl Template {
    /// Parses one string. Fails on syntax errors (with the position inside
    /// the string), unknown variables, references without static names and
    /// statements that expressions do not offer.
    pub fn parse(source: &str) -> Result<Template, ExprError> {
        if !has_template_syntax(source) {
            return Ok(Template {
                source: source.into(),
                kind: Kind::Literal,
                references: Vec::new(),
                occurrences: Vec::new(),
            });
        }
        // Counted before minijinja sees the source: its parser recurses.
        let regions = scan(source);
        if regions.iter().map(Vec::len).sum::<usize>() > MAX_TOKENS {
            return Err(ExprError::TooManyTokens);
        }
        let compiled = ENV
            .template_from_str(source)
            .map_err(|e| syntax_error(&e, 0))?;
        let (references, occurrences) = references(&regions)?;
        check_variables(&compiled, &regions)?;
        let kind = whole_expression(source).map_or(Kind::Text, Kind::Expression);
        Ok(Template {
            source: source.into(),
            kind,
            references,
            occurrences,
        })
    }

    /// The string this template was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// What the template reads, each once, in order of first appearance.
    pub fn references(&self) -> &[Reference] {
        &self.references
    }

    /// Whether the string is exactly one `{{ expression }}`, which renders
    /// to a typed value instead of a string.
    pub fn is_whole_expression(&self) -> bool {
        matches!(self.kind, Kind::Expression(_))
    }

    /// Whether the string has template syntax at all. A string without it
    /// renders as itself.
    pub fn is_template(&self) -> bool {
        !matches!(self.kind, Kind::Literal)
    }

    /// Evaluates the template. A whole expression gives its typed value;
    /// other templates give a string. Secrets read are recorded in `scope`.
    pub fn render(&self, scope: &Scope<'_>) -> Result<Value, ExprError> {
        match &self.kind {
            Kind::Literal => Ok(Value::String(self.source.to_string())),
            Kind::Expression(range) => {
                let prepared = self.prepare(scope)?;
                let inner = &self.source[range.clone()];
                let expr = ENV
                    .compile_expression(inner)
                    .map_err(|e| syntax_error(&e, range.start))?;
                let value = expr
                    .eval(prepared.context.clone())
                    .map_err(|e| self.runtime_error(&e, &prepared, range.start))?;
                let mut budget = MAX_OUTPUT_BYTES;
                to_json(&value, &mut budget, 0).map_err(|e| match e {
                    Convert::Undefined => self.undefined(&prepared, range.clone()),
                    Convert::TooLarge => ExprError::OutputTooLarge,
                    Convert::Other(message) => ExprError::NotJson { message },
                })
            }
            Kind::Text => {
                let prepared = self.prepare(scope)?;
                let template = ENV
                    .template_from_str(&self.source)
                    .map_err(|e| syntax_error(&e, 0))?;
                let mut out = CappedWriter::default();
                let result = template.render_captured_to(prepared.context.clone(), &mut out);
                if out.overflow {
                    return Err(ExprError::OutputTooLarge);
                }
                if let Err(err) = result {
                    return Err(self.runtime_error(&err, &prepared, 0));
                }
                Ok(Value::String(
                    String::from_utf8_lossy(&out.buf).into_owned(),
                ))
            }
        }
    }

    /// Builds the variables for a render from the references only.
    fn prepare(&self, scope: &Scope<'_>) -> Result<Prepared, ExprError> {
        type Entries = Vec<(String, minijinja::Value)>;
        let mut inputs: Entries = Vec::new();
        let mut nodes: BTreeMap<&str, Entries> = BTreeMap::new();
        let mut secrets: Entries = Vec::new();
        let mut env: Entries = Vec::new();
        let mut missing = vec![false; self.references.len()];
        let mut read_secret = false;
        for (index, reference) in self.references.iter().enumerate() {
            let convert = |value: &Value| {
                from_json(value, 0).ok_or_else(|| ExprError::Eval {
                    message: format!("`{reference}` is nested too deeply"),
                    span: self.first_span(index),
                })
            };
            match reference {
                Reference::Input(name) => match scope.inputs.get(name) {
                    Some(value) => inputs.push((name.clone(), convert(value)?)),
                    None => missing[index] = true,
                },
                Reference::Node { node, port } => match scope.nodes.output(node, port) {
                    Some(value) => nodes
                        .entry(node)
                        .or_default()
                        .push((port.clone(), convert(value)?)),
                    None => missing[index] = true,
                },
                Reference::Secret(name) => match scope.secrets.get(name) {
                    Some(secret) => {
                        scope.record_secret(name, &secret);
                        read_secret = true;
                        secrets.push((name.clone(), minijinja::Value::from(secret.expose())));
                    }
                    None => missing[index] = true,
                },
                Reference::Env(name) => {
                    if !scope.env.allows(name) {
                        return Err(ExprError::EnvNotAllowed {
                            name: name.clone(),
                            span: self.first_span(index),
                        });
                    }
                    match std::env::var(name) {
                        Ok(value) => env.push((name.clone(), minijinja::Value::from(value))),
                        Err(_) => missing[index] = true,
                    }
                }
            }
        }
        let nodes = nodes
            .into_iter()
            .map(|(node, ports)| (node.to_owned(), minijinja::Value::from_pairs(ports)));
        let context = minijinja::Value::from_pairs([
            ("input", minijinja::Value::from_pairs(inputs)),
            ("nodes", minijinja::Value::from_pairs(nodes)),
            ("secrets", minijinja::Value::from_pairs(secrets)),
            ("env", minijinja::Value::from_pairs(env)),
        ]);
        Ok(Prepared {
            context,
            missing,
            read_secret,
        })
    }

    fn first_span(&self, reference: usize) -> Option<Range<usize>> {
        self.occurrences
            .iter()
            .find(|o| o.reference == reference)
            .map(|o| o.span.clone())
    }

    /// The error for a reference that was missing and is read within `span`.
    fn missing_within(&self, prepared: &Prepared, span: &Range<usize>) -> Option<ExprError> {
        let occurrence = self.occurrences.iter().find(|o| {
            prepared.missing[o.reference] && o.span.start < span.end && span.start < o.span.end
        })?;
        let span = Some(occurrence.span.clone());
        Some(match &self.references[occurrence.reference] {
            Reference::Input(name) => ExprError::MissingInput {
                name: name.clone(),
                span,
            },
            Reference::Node { node, port } => ExprError::MissingNodeOutput {
                node: node.clone(),
                port: port.clone(),
                span,
            },
            Reference::Secret(name) => ExprError::MissingSecret {
                name: name.clone(),
                span,
            },
            Reference::Env(name) => ExprError::MissingEnv {
                name: name.clone(),
                span,
            },
        })
    }

    /// The error for an undefined result of the expression at `span`.
    fn undefined(&self, prepared: &Prepared, span: Range<usize>) -> ExprError {
        self.missing_within(prepared, &span)
            .unwrap_or_else(|| ExprError::Eval {
                message: format!("`{}` is undefined", self.source[span.clone()].trim()),
                span: Some(span),
            })
    }

    /// Maps a minijinja error from evaluation, without secret values.
    fn runtime_error(
        &self,
        err: &minijinja::Error,
        prepared: &Prepared,
        offset: usize,
    ) -> ExprError {
        use minijinja::ErrorKind as K;
        let span = err.range().map(|r| r.start + offset..r.end + offset);
        match err.kind() {
            K::OutOfFuel => return ExprError::TooLong,
            K::SyntaxError => return syntax_error(err, offset),
            _ => {}
        }
        let detail = err.detail().unwrap_or_default();
        if detail == PRINT_TOO_LARGE {
            return ExprError::OutputTooLarge;
        }
        if (err.kind() == K::UndefinedError || detail.contains("undefined"))
            && let Some(span) = &span
            && let Some(missing) = self.missing_within(prepared, span)
        {
            return missing;
        }
        let message = if prepared.read_secret {
            // The detail may quote values, and values may come from secrets.
            format!(
                "{} (details left out because the expression reads a secret)",
                err.kind()
            )
        } else if detail.is_empty() {
            match &span {
                // Printing an undefined value: name what was printed.
                Some(span) if err.kind() == K::UndefinedError => {
                    let text = self.source.get(span.clone()).unwrap_or_default().trim();
                    format!("{}: `{text}` is undefined", err.kind())
                }
                _ => err.kind().to_string(),
            }
        } else {
            format!("{}: {detail}", err.kind())
        };
        ExprError::Eval { message, span }
    }
}

/// Rejects variables other than the roots and minijinja's globals.
fn check_variables(
    compiled: &minijinja::Template<'_, '_>,
    regions: &[Vec<Token<'_>>],
) -> Result<(), ExprError> {
    let unknown: Vec<String> = compiled
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| !ROOTS.contains(&name.as_str()))
        .filter(|name| !ENV.globals().any(|(global, _)| global == name))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    for tokens in regions {
        for (k, token) in tokens.iter().enumerate() {
            if let Tok::Ident(name) = token.tok
                && unknown.iter().any(|u| u == name)
                && is_variable(tokens, k)
            {
                return Err(ExprError::UnknownVariable {
                    name: name.to_owned(),
                    span: Some(token.span.clone()),
                });
            }
        }
    }
    let mut unknown = unknown;
    unknown.sort();
    Err(ExprError::UnknownVariable {
        name: unknown.swap_remove(0),
        span: None,
    })
}

/// If `source` is exactly one `{{ expression }}` (whitespace around it
/// allowed), the range of the expression.
fn whole_expression(source: &str) -> Option<Range<usize>> {
    let start = source.len() - source.trim_start().len();
    let end = source.trim_end().len();
    let trimmed = source.get(start..end)?;
    if trimmed.len() < 4 || !trimmed.starts_with("{{") || !trimmed.ends_with("}}") {
        return None;
    }
    let (mut from, mut to) = (start + 2, end - 2);
    if matches!(source.as_bytes().get(from), Some(b'-' | b'+')) && from < to {
        from += 1;
    }
    if to > from && matches!(source.as_bytes().get(to - 1), Some(b'-' | b'+')) {
        to -= 1;
    }
    let inner = source.get(from..to)?;
    if inner.trim().is_empty() || ENV.compile_expression(inner).is_err() {
        return None;
    }
    Some(from..to)
}

/// Collects text output up to [`MAX_OUTPUT_BYTES`], then refuses more.
#[derive(Default)]
struct CappedWriter {
    buf: Vec<u8>,
    overflow: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT_BYTES {
            self.overflow = true;
            return Err(io::Error::other("expression output is larger than 1 MiB"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Values across the boundary.

/// A JSON value as a minijinja value; `None` if nested deeper than
/// [`MAX_DEPTH`].
fn from_json(value: &Value, depth: usize) -> Option<minijinja::Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match value {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                minijinja::Value::from(u)
            } else if let Some(i) = n.as_i64() {
                minijinja::Value::from(i)
            } else {
                minijinja::Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => minijinja::Value::from(s.as_str()),
        Value::Array(items) => minijinja::Value::from(
            items
                .iter()
                .map(|item| from_json(item, depth + 1))
                .collect::<Option<Vec<_>>>()?,
        ),
        Value::Object(map) => minijinja::Value::from_pairs(
            map.iter()
                .map(|(k, v)| Some((k.as_str(), from_json(v, depth + 1)?)))
                .collect::<Option<Vec<_>>>()?,
        ),
    })
}

enum Convert {
    Undefined,
    TooLarge,
    Other(String),
}

/// A minijinja value as JSON, charging its JSON size against `budget`.
fn to_json(value: &minijinja::Value, budget: &mut usize, depth: usize) -> Result<Value, Convert> {
    fn charge(budget: &mut usize, n: usize) -> Result<(), Convert> {
        *budget = budget.checked_sub(n).ok_or(Convert::TooLarge)?;
        Ok(())
    }
    if depth > MAX_DEPTH {
        return Err(Convert::Other("it is nested too deeply".into()));
    }
    match value.kind() {
        ValueKind::Undefined => Err(Convert::Undefined),
        ValueKind::None => charge(budget, 4).map(|()| Value::Null),
        ValueKind::Bool => charge(budget, 5).map(|()| Value::Bool(value.is_true())),
        ValueKind::Number => {
            charge(budget, 20)?;
            if value.is_integer() {
                if let Ok(i) = i64::try_from(value.clone()) {
                    Ok(Value::from(i))
                } else if let Ok(u) = u64::try_from(value.clone()) {
                    Ok(Value::from(u))
                } else {
                    Err(Convert::Other("an integer does not fit in 64 bits".into()))
                }
            } else {
                let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| Convert::Other("a number is not finite".into()))
            }
        }
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            charge(budget, s.len().saturating_add(2))?;
            Ok(Value::String(s.to_owned()))
        }
        ValueKind::Seq | ValueKind::Iterable => {
            charge(budget, 2)?;
            let items = value
                .try_iter()
                .map_err(|_| Convert::Other("a sequence cannot be read".into()))?;
            let mut out = Vec::new();
            for item in items {
                charge(budget, 1)?;
                out.push(to_json(&item, budget, depth + 1)?);
            }
            Ok(Value::Array(out))
        }
        ValueKind::Map => {
            charge(budget, 2)?;
            let keys = value
                .try_iter()
                .map_err(|_| Convert::Other("a map cannot be read".into()))?;
            let mut out = Map::new();
            for key in keys {
                let name = match key.kind() {
                    ValueKind::String => key.as_str().unwrap_or_default().to_owned(),
                    ValueKind::Number | ValueKind::Bool => key.to_string(),
                    kind => return Err(Convert::Other(format!("a map key is a {kind}"))),
                };
                charge(budget, name.len().saturating_add(4))?;
                let item = value
                    .get_item(&key)
                    .map_err(|_| Convert::Other("a map cannot be read".into()))?;
                let item = to_json(&item, budget, depth + 1)?;
                out.insert(name, item);
            }
            Ok(Value::Object(out))
        }
        ValueKind::Bytes => Err(Convert::Other("bytes have no JSON form".into())),
        ValueKind::Invalid => Err(Convert::Other("the value is invalid".into())),
        kind => Err(Convert::Other(format!("a {kind} has no JSON form"))),
    }
}

// ---------------------------------------------------------------------------
// Whole configs.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A node's config with its templated strings, parsed once and rendered per
/// execution.
#[derive(Debug, Clone)]
pub struct ConfigTemplate {
    config: Value,
    leaves: Vec<Leaf>,
    references: Vec<Reference>,
}

#[derive(Debug, Clone)]
struct Leaf {
    steps: Vec<Step>,
    path: String,
    template: Template,
}

/// The path of a value inside a config: `headers.Authorization`,
/// `items[2]`, `headers["Content-Type"]`; empty for the config itself.
fn path_of(steps: &[Step]) -> String {
    let mut path = String::new();
    for step in steps {
        match step {
            Step::Index(i) => path.push_str(&format!("[{i}]")),
            Step::Key(key) => {
                let plain = !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !plain {
                    path.push_str(&format!("[{key:?}]"));
                } else if path.is_empty() {
                    path.push_str(key);
                } else {
                    path.push('.');
                    path.push_str(key);
                }
            }
        }
    }
    path
}

impl ConfigTemplate {
    /// Finds and parses every string in `config` that holds template syntax.
    /// Object keys are never templates. Returns every error, each with the
    /// path of its string.
    pub fn parse(config: &Value) -> Result<ConfigTemplate, Vec<(String, ExprError)>> {
        let mut leaves = Vec::new();
        let mut errors = Vec::new();
        let mut stack: Vec<(Vec<Step>, &Value)> = vec![(Vec::new(), config)];
        while let Some((steps, value)) = stack.pop() {
            match value {
                Value::String(s) if has_template_syntax(s) => match Template::parse(s) {
                    Ok(template) => leaves.push(Leaf {
                        path: path_of(&steps),
                        steps,
                        template,
                    }),
                    Err(err) => errors.push((path_of(&steps), err)),
                },
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate().rev() {
                        let mut steps = steps.clone();
                        steps.push(Step::Index(i));
                        stack.push((steps, item));
                    }
                }
                Value::Object(map) => {
                    let entries: Vec<_> = map.iter().collect();
                    for (key, item) in entries.into_iter().rev() {
                        let mut steps = steps.clone();
                        steps.push(Step::Key(key.clone()));
                        stack.push((steps, item));
                    }
                }
                _ => {}
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut references: Vec<Reference> = Vec::new();
        for leaf in &leaves {
            for reference in leaf.template.references() {
                if !references.contains(reference) {
                    references.push(reference.clone());
                }
            }
        }
        Ok(ConfigTemplate {
            config: config.clone(),
            leaves,
            references,
        })
    }

    /// Whether the config has no expressions at all: rendering gives it back
    /// unchanged.
    pub fn is_static(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The config as written.
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// Everything the config's expressions read, each once, in order of first
    /// appearance.
    pub fn references(&self) -> &[Reference] {
        &self.references
    }

    /// The paths of the templated strings: arrays in order, object keys in
    /// the order the JSON map keeps them.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.leaves.iter().map(|l| l.path.as_str())
    }

    /// The config without its templated strings: removed from objects,
    /// `null` in arrays. What is known of the config before any run.
    pub fn static_part(&self) -> Value {
        let mut out = self.config.clone();
        for leaf in &self.leaves {
            let Some((last, parent)) = leaf.steps.split_last() else {
                return Value::Null;
            };
            match (slot_mut(&mut out, parent), last) {
                (Some(Value::Object(map)), Step::Key(key)) => {
                    map.remove(key);
                }
                (Some(Value::Array(items)), Step::Index(i)) => {
                    if let Some(item) = items.get_mut(*i) {
                        *item = Value::Null;
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// A copy of the config with every templated string replaced by its
    /// rendered value. Fails on the first error, with the path of its string.
    /// Secrets read are recorded in `scope`.
    pub fn render(&self, scope: &Scope<'_>) -> Result<Value, (String, ExprError)> {
        let mut out = self.config.clone();
        for leaf in &self.leaves {
            let value = leaf
                .template
                .render(scope)
                .map_err(|e| (leaf.path.clone(), e))?;
            if let Some(slot) = slot_mut(&mut out, &leaf.steps) {
                *slot = value;
            }
        }
        Ok(out)
    }
}

fn slot_mut<'v>(mut value: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    for step in steps {
        value = match step {
            Step::Key(key) => value.as_object_mut()?.get_mut(key)?,
            Step::Index(i) => value.as_array_mut()?.get_mut(*i)?,
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::MapSecrets;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn sample_inputs() -> Map<String, Value> {
        object(json!({
            "n": 41,
            "name": "ada",
            "flag": true,
            "price": 2.5,
            "tags": ["a", "b"],
            "user": { "id": 7, "roles": ["admin"] },
            "s": "text",
            "pin": "918273",
        }))
    }

    fn sample_nodes() -> HashMap<String, Map<String, Value>> {
        let mut nodes = HashMap::new();
        nodes.insert(
            "fetch".to_owned(),
            object(json!({ "status": 200, "body": { "items": [1, 2, 3] } })),
        );
        nodes.insert("fetch-user".to_owned(), object(json!({ "name": "Ada" })));
        nodes
    }

    fn secrets() -> MapSecrets {
        MapSecrets::new()
            .with("API_KEY", "sk-live-4f9a8b7c")
            .with("PIN", "918273")
    }

    /// Renders `source` with the sample inputs, nodes and secrets.
    fn render(source: &str) -> Result<Value, ExprError> {
        let inputs = sample_inputs();
        let nodes = sample_nodes();
        let secrets = secrets();
        let scope = Scope::new(&inputs, &secrets).with_nodes(&nodes);
        Template::parse(source)?.render(&scope)
    }

    fn render_ok(source: &str) -> Value {
        match render(source) {
            Ok(value) => value,
            Err(err) => panic!("{source:?} failed: {err}"),
        }
    }

    fn render_err(source: &str) -> ExprError {
        match render(source) {
            Ok(value) => panic!("{source:?} should fail but gave {value}"),
            Err(err) => err,
        }
    }

    fn parse_err(source: &str) -> ExprError {
        match Template::parse(source) {
            Ok(t) => panic!("{source:?} should not parse: {t:?}"),
            Err(err) => err,
        }
    }

    /// Renders, expecting an error. (How fast the limits stop a render is
    /// not asserted here: speed belongs to benchmarks, not unit tests.)
    fn render_err_quickly(source: &str) -> ExprError {
        render_err(source)
    }

    const _: fn() = || {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Template>();
        assert_send_sync::<ConfigTemplate>();
        assert_send_sync::<ExprError>();
        assert_send_sync::<Reference>();
    };

    // --- typed values and text -----------------------------------------

    #[test]
    fn whole_expressions_are_typed() {
        assert_eq!(render_ok("{{ input.n + 1 }}"), json!(42));
        assert_eq!(render_ok("{{ input.price * 2 }}"), json!(5.0));
        assert_eq!(render_ok("{{ input.n > 40 }}"), json!(true));
        assert_eq!(render_ok("{{ input.name | upper }}"), json!("ADA"));
        assert_eq!(render_ok("{{ none }}"), json!(null));
        assert_eq!(
            render_ok("{{ nodes.fetch.body }}"),
            json!({ "items": [1, 2, 3] })
        );
        assert_eq!(render_ok("{{ [input.n, input.name] }}"), json!([41, "ada"]));
        assert_eq!(
            render_ok("{{ input.tags | map('upper') | list }}"),
            json!(["A", "B"])
        );
        assert_eq!(
            render_ok("{{ {'id': input.user.id, 'ok': true} }}"),
            json!({ "id": 7, "ok": true })
        );
        assert_eq!(render_ok("{{ range(3) }}"), json!([0, 1, 2]));
        assert_eq!(render_ok("{{ nodes['fetch-user'].name }}"), json!("Ada"));
        assert_eq!(render_ok("{{ nodes.fetch.body['items'][1] }}"), json!(2));
    }

    #[test]
    fn whitespace_around_a_whole_expression_is_allowed() {
        let template = Template::parse("  {{ input.n }}\n").unwrap();
        assert!(template.is_whole_expression());
        assert_eq!(render_ok("  {{ input.n }}\n"), json!(41));
        assert_eq!(render_ok("{{- input.n -}}"), json!(41));
        assert_eq!(render_ok("{{ '}}' }}"), json!("}}"));
        assert_eq!(
            render_ok("{{ {'a': {'b': 1}} }}"),
            json!({ "a": { "b": 1 } })
        );
    }

    #[test]
    fn other_templates_render_as_text() {
        for source in [
            "n={{ input.n }}",
            "{{ input.n }}{{ input.n }}",
            "{{ input.n }} ",
        ] {
            let template = Template::parse(source).unwrap();
            assert!(template.is_template());
            assert!(!template.is_whole_expression() || source.ends_with(' '));
        }
        assert_eq!(render_ok("n={{ input.n }}"), json!("n=41"));
        assert_eq!(render_ok("{{ input.n }}{{ input.n }}"), json!("4141"));
        assert_eq!(
            render_ok("{% for t in input.tags %}#{{ t }} {% endfor %}"),
            json!("#a #b ")
        );
        assert_eq!(
            render_ok("{% if input.flag %}yes{% else %}no{% endif %}"),
            json!("yes")
        );
        assert_eq!(render_ok("{{ input.n }}{# note #}"), json!("41"));
        assert_eq!(render_ok("{# only a comment #}"), json!(""));
        assert_eq!(render_ok("{% set x = input.n * 2 %}{{ x }}"), json!("82"));
        assert_eq!(
            render_ok("{% for r in input.user.roles %}{{ loop.index }}:{{ r }}{% endfor %}"),
            json!("1:admin")
        );
    }

    #[test]
    fn strings_without_template_syntax_are_left_alone() {
        for source in ["plain", "", "{ not } a template", "a } b { c", "50% off"] {
            let template = Template::parse(source).unwrap();
            assert!(!template.is_template());
            assert!(template.references().is_empty());
            assert_eq!(render_ok(source), json!(source));
        }
    }

    #[test]
    fn useful_filters() {
        assert_eq!(render_ok("{{ input.missing | default('x') }}"), json!("x"));
        assert_eq!(render_ok("{{ input.tags | length }}"), json!(2));
        assert_eq!(
            render_ok("{{ input.user | tojson }}"),
            json!(r#"{"id": 7, "roles": ["admin"]}"#)
        );
        assert_eq!(render_ok("{{ input.tags | join(',') }}"), json!("a,b"));
        assert_eq!(
            render_ok("{{ input.s | replace('x', 'X') }}"),
            json!("teXt")
        );
        assert_eq!(render_ok("{{ 'a b&c' | urlencode }}"), json!("a%20b%26c"));
        assert_eq!(render_ok("{{ '12' | int + 1 }}"), json!(13));
        assert_eq!(render_ok("{{ input.price | round }}"), json!(2.0));
        assert_eq!(render_ok("{{ input.n is defined }}"), json!(true));
        assert_eq!(render_ok("{{ input.nope is defined }}"), json!(false));
        assert_eq!(render_ok("{{ 'admin' in input.user.roles }}"), json!(true));
        assert_eq!(
            render_ok("{{ input.s is startingwith('te') }}"),
            json!(true)
        );
        assert_eq!(render_ok("{{ input.s is endingwith('xt') }}"), json!(true));
        assert_eq!(render_ok("{{ 'b' is in input.tags }}"), json!(true));
        assert_eq!(render_ok("{{ '%s-%d' | format('a', 3) }}"), json!("a-3"));
        assert_eq!(render_ok("{{ 'ab\ncd' | indent(2) }}"), json!("ab\n  cd"));
        assert_eq!(
            render_ok("{{ input.user | tojson(indent=2) }}"),
            json!("{\n  \"id\": 7,\n  \"roles\": [\n    \"admin\"\n  ]\n}")
        );
    }

    #[test]
    fn literal_braces() {
        assert_eq!(render_ok("{{ '{{' }}"), json!("{{"));
        assert_eq!(render_ok("a {{ '{{' }} b }}"), json!("a {{ b }}"));
        assert_eq!(
            render_ok("{% raw %}{{ input.n }} {% if %}{% endraw %}!"),
            json!("{{ input.n }} {% if %}!")
        );
        // A raw block hides what looks like references.
        let template = Template::parse("{% raw %}{{ foo.bar }}{% endraw %}").unwrap();
        assert!(template.references().is_empty());
    }

    // --- references ----------------------------------------------------

    #[test]
    fn references_are_found_statically() {
        let template = Template::parse(
            "{{ input.url }} {{ nodes.fetch.status }} {{ nodes['fetch-user'].body.x }} \
             {{ secrets.API_KEY }} {{ env.HOME }} {{ input.url }} \
             {% for x in input['my-list'] %}{{ x.name }}{% endfor %}",
        )
        .unwrap();
        assert_eq!(
            template.references(),
            [
                Reference::Input("url".into()),
                Reference::Node {
                    node: "fetch".into(),
                    port: "status".into()
                },
                Reference::Node {
                    node: "fetch-user".into(),
                    port: "body".into()
                },
                Reference::Secret("API_KEY".into()),
                Reference::Env("HOME".into()),
                Reference::Input("my-list".into()),
            ]
        );
        // Attribute and filter names are not references.
        let template = Template::parse("{{ input.x.input | default(input.y) }}").unwrap();
        assert_eq!(
            template.references(),
            [Reference::Input("x".into()), Reference::Input("y".into())]
        );
    }

    #[test]
    fn reference_display() {
        assert_eq!(Reference::Input("url".into()).to_string(), "input.url");
        assert_eq!(
            Reference::Node {
                node: "fetch-user".into(),
                port: "body".into()
            }
            .to_string(),
            "nodes[\"fetch-user\"].body"
        );
        assert_eq!(Reference::Secret("K".into()).to_string(), "secrets.K");
        assert_eq!(Reference::Env("HOME".into()).to_string(), "env.HOME");
    }

    // --- static errors -------------------------------------------------

    #[test]
    fn unknown_variables_are_refused() {
        let err = parse_err("hello {{ foo.bar }}");
        assert_eq!(
            err,
            ExprError::UnknownVariable {
                name: "foo".into(),
                span: Some(9..12)
            }
        );
        assert_eq!(
            err.to_string(),
            "unknown variable `foo` at position 9; expressions can read input, nodes, secrets and env"
        );
        for (source, name) in [
            ("{{ debug() }}", "debug"),
            ("{{ namespace(a=1) }}", "namespace"),
            ("{% for x in items %}{% endfor %}", "items"),
            ("{{ input.a | default(fallback) }}", "fallback"),
        ] {
            match parse_err(source) {
                ExprError::UnknownVariable { name: n, .. } => assert_eq!(n, name, "{source}"),
                other => panic!("{source}: {other}"),
            }
        }
        // Loop variables, `loop`, `set` and globals are fine.
        for source in [
            "{% for x in input.tags %}{{ x }}{{ loop.index }}{% endfor %}",
            "{% set y = 1 %}{{ y }}",
            "{% with z = 2 %}{{ z }}{% endwith %}",
            "{{ range(2) | list }}{{ dict(a=1) }}",
        ] {
            Template::parse(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        }
    }

    #[test]
    fn references_need_static_names() {
        for (source, root, span) in [
            ("{{ nodes[x].status }}", "nodes", 3..8),
            ("{{ nodes.fetch }}", "nodes", 3..14),
            ("{{ nodes }}", "nodes", 3..8),
            ("{{ nodes.fetch[port] }}", "nodes", 3..14),
            ("{{ input }}", "input", 3..8),
            ("{{ input[name] }}", "input", 3..8),
            ("{{ input | tojson }}", "input", 3..8),
            ("{{ secrets['A' ~ 'B'] }}", "secrets", 3..10),
            ("{{ env[input.x] }}", "env", 3..6),
            ("{% set input = 1 %}", "input", 7..12),
            ("{% for env in [1] %}{% endfor %}", "env", 7..10),
        ] {
            assert_eq!(
                parse_err(source),
                ExprError::BadReference {
                    root: root.into(),
                    span: Some(span)
                },
                "{source}"
            );
        }
        let message = parse_err("{{ nodes.fetch }}").to_string();
        assert!(message.contains("`nodes.fetch.status`"), "{message}");
        assert!(message.contains("nodes[\"fetch-user\"]"), "{message}");
        let message = parse_err("{{ input[name] }}").to_string();
        assert!(message.contains("`input.url`"), "{message}");
    }

    #[test]
    fn loading_other_templates_is_refused() {
        for (source, statement) in [
            ("{% include 'x' %}", "include"),
            ("{% import 'x' as y %}", "import"),
            ("{% from 'x' import y %}", "from"),
            ("{% extends 'base' %}", "extends"),
            ("{% block b %}{% endblock %}", "block"),
            ("{% macro m() %}{% endmacro %}", "macro"),
        ] {
            let err = parse_err(source);
            assert_eq!(
                err,
                ExprError::Unsupported {
                    statement: statement.into(),
                    span: err.span()
                },
                "{source}"
            );
            assert!(err.span().is_some(), "{source}");
        }
        let message = parse_err("ab {% include 'x' %}").to_string();
        assert_eq!(
            message,
            "`{% include %}` is not available in expressions at position 6: \
             expressions cannot load other templates (there is no loader)"
        );
    }

    #[test]
    fn syntax_errors_have_positions_inside_the_string() {
        let err = parse_err("Bearer {{ input.n + }}");
        assert!(matches!(err, ExprError::Syntax { .. }), "{err}");
        assert_eq!(err.position(), Some(20));
        assert!(
            err.to_string().starts_with("syntax error at position 20: "),
            "{err}"
        );

        let err = parse_err("abc {{ input.n");
        assert!(matches!(err, ExprError::Syntax { .. }), "{err}");
        assert!(err.position().is_some_and(|p| p >= 4), "{err}");

        for source in [
            "{% if %}",
            "{% for %}",
            "{{ }}",
            "{% endif %}",
            "{{ 'unclosed }}",
        ] {
            assert!(
                matches!(parse_err(source), ExprError::Syntax { .. }),
                "{source}"
            );
        }
    }

    #[test]
    fn the_amount_of_code_is_bounded() {
        let source = format!("{{{{ {} }}}}", vec!["1"; MAX_TOKENS].join(" + "));
        assert_eq!(parse_err(&source), ExprError::TooManyTokens);
        // Deep nesting is a syntax error, not a crash.
        let deep = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(parse_err(&deep), ExprError::TooManyTokens);
        // Nesting is limited below the token limit too.
        for open in ["(", "[", "{% if true %}"] {
            let close = match open {
                "(" => ")",
                "[" => "]",
                _ => "{% endif %}",
            };
            let body = if open == "(" || open == "[" {
                "{{ 1 }}"
            } else {
                "x"
            };
            let deep = if body == "x" {
                format!("{}x{}", open.repeat(200), close.repeat(200))
            } else {
                format!("{{{{ {}1{} }}}}", open.repeat(300), close.repeat(300))
            };
            let err = parse_err(&deep);
            assert!(err.to_string().contains("recursion"), "{open}: {err}");
        }
    }

    // --- runtime errors ------------------------------------------------

    #[test]
    fn missing_values_are_named() {
        assert_eq!(
            render_err("{{ input.nope }}"),
            ExprError::MissingInput {
                name: "nope".into(),
                span: Some(3..13)
            }
        );
        assert_eq!(
            render_err("url: {{ input.nope }}").to_string(),
            "input `nope` was not given at position 8"
        );
        assert!(matches!(
            render_err("{{ input.nope + 1 }}"),
            ExprError::MissingInput { .. }
        ));
        assert!(matches!(
            render_err("{% if input.nope %}x{% endif %}"),
            ExprError::MissingInput { .. }
        ));
        assert!(matches!(
            render_err("{{ [input.nope] }}"),
            ExprError::MissingInput { .. }
        ));
        assert_eq!(
            render_err("{{ nodes.fetch.headers }}"),
            ExprError::MissingNodeOutput {
                node: "fetch".into(),
                port: "headers".into(),
                span: Some(3..22)
            }
        );
        assert_eq!(
            render_err("x {{ nodes.gone.body.x }}").to_string(),
            "node `gone` has no output `body` in this execution at position 5"
        );
        assert_eq!(
            render_err("Bearer {{ secrets.NOPE }}").to_string(),
            "secret `NOPE` is not set at position 10"
        );
        // A value that is there but lacks an attribute.
        let err = render_err("{{ input.user.nope }}");
        assert!(matches!(err, ExprError::Eval { .. }), "{err}");
        assert!(err.to_string().contains("undefined"), "{err}");
        let err = render_err("x{{ input.user.nope }}");
        assert!(err.to_string().contains("undefined"), "{err}");
    }

    #[test]
    fn type_errors_are_reported() {
        let err = render_err("{{ input.s + 1 }}");
        assert_eq!(
            err,
            ExprError::Eval {
                message: "invalid operation: tried to use + operator on unsupported types \
                          string and number"
                    .into(),
                span: Some(3..14)
            }
        );
        let err = render_err("n={{ input.tags | round }}");
        assert!(matches!(err, ExprError::Eval { .. }), "{err}");
        let err = render_err("{{ input.n | nosuchfilter }}");
        assert!(err.to_string().contains("nosuchfilter"), "{err}");
        let err = render_err("{{ range }}");
        assert!(matches!(err, ExprError::NotJson { .. }), "{err}");
    }

    // --- secrets -------------------------------------------------------

    #[test]
    fn secrets_read_are_reported() {
        let inputs = sample_inputs();
        let secrets = secrets();
        let scope = Scope::new(&inputs, &secrets);
        let value = Template::parse("Bearer {{ secrets.API_KEY }}")
            .unwrap()
            .render(&scope)
            .unwrap();
        assert_eq!(value, json!("Bearer sk-live-4f9a8b7c"));
        let used = scope.used_secrets();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].expose(), "sk-live-4f9a8b7c");
        // Reading it again does not report it twice; a failed render still
        // reports what it read.
        let template =
            Template::parse("{{ secrets.API_KEY }}{{ secrets.PIN }}{{ input.nope }}").unwrap();
        assert!(template.render(&scope).is_err());
        let used: Vec<_> = scope
            .used_secrets()
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        assert_eq!(used, ["sk-live-4f9a8b7c", "918273"]);
        // The scope's debug output has no values.
        let debug = format!("{scope:?}");
        assert!(!debug.contains("sk-live"), "{debug}");
    }

    #[test]
    fn errors_never_contain_secret_values() {
        // Without secrets, minijinja's message quotes the operands ...
        let err = render_err("{{ input.pin | int // 0 }}");
        assert!(err.to_string().contains("918273"), "{err}");
        // ... with a secret, it does not.
        let err = render_err("{{ secrets.PIN | int // 0 }}");
        assert!(!err.to_string().contains("918273"), "{err}");
        assert!(err.to_string().contains("secret"), "{err}");
        assert!(err.position().is_some(), "{err}");

        // Fails after reading a secret.
        for source in [
            "Bearer {{ secrets.API_KEY }} {{ input.s + 1 }}",
            "{{ secrets.API_KEY ~ input.nope }}",
            "{{ secrets.API_KEY + 1 }}",
            "{{ secrets.API_KEY | int(base=99) }}",
            "{{ (secrets.API_KEY ~ 'x') | attr(secrets.API_KEY) | upper }}",
            "{{ secrets.API_KEY.nope }}",
            "{{ secrets.API_KEY[100] }}",
            "{{ secrets.API_KEY | nosuchfilter }}",
            "{{ '%d' | format(secrets.API_KEY) }}",
        ] {
            let err = render_err(source);
            let text = format!("{err} {err:?}");
            assert!(!text.contains("sk-live"), "{source}: {text}");
            assert!(!text.contains("4f9a8b7c"), "{source}: {text}");
        }
    }

    // --- environment ---------------------------------------------------

    fn render_env(source: &str, env: EnvAccess) -> Result<Value, ExprError> {
        let inputs = Map::new();
        let secrets = MapSecrets::new();
        let scope = Scope::new(&inputs, &secrets).with_env(env);
        Template::parse(source)?.render(&scope)
    }

    #[test]
    fn env_access_follows_the_policy() {
        // Cargo sets this for test binaries.
        let source = "{{ env.CARGO_PKG_NAME }}";
        assert_eq!(
            render_env(source, EnvAccess::None).unwrap_err().to_string(),
            "environment variable `CARGO_PKG_NAME` is not allowed at position 3; \
             the application must allow it"
        );
        assert!(matches!(
            render_env(source, EnvAccess::Only(vec!["OTHER".into()])),
            Err(ExprError::EnvNotAllowed { .. })
        ));
        assert_eq!(
            render_env(source, EnvAccess::Only(vec!["CARGO_PKG_NAME".into()])).unwrap(),
            json!("ghostflow")
        );
        assert_eq!(
            render_env(source, EnvAccess::All).unwrap(),
            json!("ghostflow")
        );
        // Not allowed even with a default: the policy is checked up front.
        assert!(matches!(
            render_env("{{ env.CARGO_PKG_NAME | default('x') }}", EnvAccess::None),
            Err(ExprError::EnvNotAllowed { .. })
        ));
        // Allowed but not set.
        assert_eq!(
            render_env("{{ env.GHOSTFLOW_TEST_SURELY_UNSET }}", EnvAccess::All)
                .unwrap_err()
                .to_string(),
            "environment variable `GHOSTFLOW_TEST_SURELY_UNSET` is not set at position 3"
        );
        assert_eq!(
            render_env(
                "{{ env.GHOSTFLOW_TEST_SURELY_UNSET | default('d') }}",
                EnvAccess::All
            )
            .unwrap(),
            json!("d")
        );
    }

    // --- limits --------------------------------------------------------

    #[test]
    fn huge_strings_run_out_of_fuel() {
        assert_eq!(
            render_err_quickly("{{ 'x' * 1000000000 }}"),
            ExprError::TooLong
        );
        assert_eq!(
            render_err_quickly("a{{ 'x' * 1000000000 }}"),
            ExprError::TooLong
        );
        assert_eq!(
            render_err_quickly("{{ '%1000000000s' | format(1) }}"),
            ExprError::TooLong
        );
        assert_eq!(
            ExprError::TooLong.to_string(),
            "expression ran too long: it used up its fuel of 500000 steps \
             (building large values uses fuel too)"
        );
    }

    #[test]
    fn huge_ranges_are_refused() {
        let err = render_err_quickly("{{ range(100000000) }}");
        assert!(
            err.to_string().contains("range has too many elements"),
            "{err}"
        );
        let err = render_err_quickly("{% for i in range(100000000) %}{% endfor %}");
        assert!(
            err.to_string().contains("range has too many elements"),
            "{err}"
        );
    }

    #[test]
    fn nested_loops_run_out_of_fuel() {
        assert_eq!(
            render_err_quickly(
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
            ),
            ExprError::TooLong
        );
        assert_eq!(
            render_err_quickly(
                "{{ range(100000) | map('string') | map('upper') | map('lower') | join }}"
            ),
            ExprError::TooLong
        );
    }

    #[test]
    fn repeating_filters_are_bounded() {
        for source in [
            "{{ (['x' * 1000000] * 1000) | join }}",
            "{{ (['x' * 1000000] * 1000) | string }}",
            "{{ (['x' * 1000000] * 1000) | tojson }}",
            "{{ (['x' * 1000000] * 1000) | upper }}",
            "{{ (['x' * 1000000] * 1000) | pprint }}",
            "{{ (['x' * 1000000] * 1000) | safe }}",
            "{{ '%s' | format(['x' * 1000000] * 1000) }}",
            "{{ [[[1]]] | tojson(indent=100000000) }}",
            "{{ [[[1]]] | tojson(100000000) }}",
            "{{ 'a\nb' | indent(1000000000) }}",
            "{{ 'a\nb' | indent(width=1000000000) }}",
            "{{ ('x\n' * 1000000) | indent(8) }}",
            "{{ (['x' * 100000] * 100000) | join(',') }}",
            "{{ 'x' | replace('x', 'x' * 1000000) | replace('x', 'x' * 1000000) }}",
            "{{ 'x' is startingwith(['x' * 1000000] * 1000) }}",
            "{{ (['x' * 1000000] * 1000) is in 'abc' }}",
        ] {
            let err = render_err_quickly(source);
            assert!(
                matches!(err, ExprError::TooLong | ExprError::Eval { .. }),
                "{source}: {err}"
            );
        }
        let err = render_err_quickly("{{ (['x' * 1000000] * 1000) | join }}");
        assert_eq!(
            err.to_string(),
            "invalid operation: value is too large to turn into text (more than 2 MiB) at position 30"
        );
    }

    #[test]
    fn output_is_capped() {
        assert_eq!(
            render_err_quickly("a{{ 'x' * 2000000 }}"),
            ExprError::OutputTooLarge
        );
        assert_eq!(
            render_err_quickly("{{ 'x' * 2000000 }}"),
            ExprError::OutputTooLarge
        );
        assert_eq!(
            render_err_quickly("{% for i in range(100000) %}0123456789abcdef{% endfor %}"),
            ExprError::OutputTooLarge
        );
        // A lazily repeated list is cut off while it is converted.
        assert_eq!(
            render_err_quickly("{{ ['x'] * 100000000 }}"),
            ExprError::OutputTooLarge
        );
        assert_eq!(
            render_err_quickly("-{{ ['x'] * 100000000 }}"),
            ExprError::OutputTooLarge
        );
        assert_eq!(
            ExprError::OutputTooLarge.to_string(),
            "expression output is larger than 1 MiB"
        );
        // Just under the cap is fine.
        let value = render_ok("{{ 'x' * 1000000 }}");
        assert_eq!(value.as_str().map(str::len), Some(1_000_000));
    }

    /// Parses and renders on a thread with a 2 MiB stack, like a tokio
    /// worker's.
    fn on_small_stack(source: String) -> Result<Value, ExprError> {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let inputs = sample_inputs();
                let secrets = MapSecrets::new();
                Template::parse(&source)?.render(&Scope::new(&inputs, &secrets))
            })
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn long_chains_at_the_token_limit_fit_a_small_stack() {
        let n = MAX_TOKENS - 10;
        for source in [
            format!("{{{{ {}1 }}}}", "not ".repeat(n)),
            format!("{{{{ {}1 }}}}", "-".repeat(n)),
            format!("{{{{ 1{} }}}}", "+1".repeat(n / 2)),
            format!("{{{{ 'a'{} }}}}", "~'a'".repeat(n / 2)),
            format!("{{{{ input.user{} }}}}", ".a".repeat(n / 2)),
            format!("{{{{ input.n{} }}}}", "|abs".repeat(n / 2)),
            format!("{{{{ range{} }}}}", "()".repeat(n / 2)),
            format!("{{{{ input.tags{} }}}}", "[0]".repeat(n / 3)),
            format!("{{{{ 1{} }}}}", " and 1".repeat(n / 2)),
            format!("x{}", "{{ input.n }}".repeat(n / 3)),
        ] {
            // Success or error, but no crash.
            let _ = on_small_stack(source);
        }
        let over = format!("{{{{ {}1 }}}}", "not ".repeat(100_000));
        assert_eq!(on_small_stack(over), Err(ExprError::TooManyTokens));
    }

    #[test]
    fn deeply_nested_values_render_on_a_small_stack() {
        // Without `namespace()`, nesting needs code for every level, and code
        // is limited, so values stay shallow enough for a 2 MiB stack.
        // `{% set a = [[[[[[[[[[a]]]]]]]]]] %}` adds ten levels for 26 tokens.
        let statements = (MAX_TOKENS - 10) / 26;
        let levels = statements * 10;
        let source = format!(
            "{{% set a = 1 %}}{}{{{{ a }}}}",
            "{% set a = [[[[[[[[[[a]]]]]]]]]] %}".repeat(statements)
        );
        let template = Template::parse(&source).unwrap();
        let out = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let inputs = Map::new();
                let secrets = MapSecrets::new();
                template.render(&Scope::new(&inputs, &secrets))
            })
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(out.as_str().map(str::len), Some(2 * levels + 1));
    }

    // --- whole configs -------------------------------------------------

    #[test]
    fn configs_render_their_templated_leaves() {
        let config = json!({
            "url": "https://x.test/{{ input.n }}",
            "method": "GET",
            "headers": {
                "Authorization": "Bearer {{ secrets.API_KEY }}",
                "Content-Type": "application/json",
            },
            "body": "{{ nodes.fetch.body }}",
            "items": [1, "{{ input.n + 1 }}", { "x": "{{ input.name }}" }],
            "count": 3,
        });
        let template = ConfigTemplate::parse(&config).unwrap();
        assert!(!template.is_static());
        assert_eq!(
            template.paths().collect::<Vec<_>>(),
            // In the order written (serde_json keeps the order of maps).
            [
                "url",
                "headers.Authorization",
                "body",
                "items[1]",
                "items[2].x",
            ]
        );
        assert_eq!(
            template.references(),
            [
                Reference::Input("n".into()),
                Reference::Secret("API_KEY".into()),
                Reference::Node {
                    node: "fetch".into(),
                    port: "body".into()
                },
                Reference::Input("name".into()),
            ]
        );
        let inputs = sample_inputs();
        let nodes = sample_nodes();
        let secrets = secrets();
        let scope = Scope::new(&inputs, &secrets).with_nodes(&nodes);
        let rendered = template.render(&scope).unwrap();
        assert_eq!(
            rendered,
            json!({
                "url": "https://x.test/41",
                "method": "GET",
                "headers": {
                    "Authorization": "Bearer sk-live-4f9a8b7c",
                    "Content-Type": "application/json",
                },
                "body": { "items": [1, 2, 3] },
                "items": [1, 42, { "x": "ada" }],
                "count": 3,
            })
        );
        assert_eq!(scope.used_secrets().len(), 1);
        assert_eq!(template.config(), &config);
    }

    #[test]
    fn static_configs_stay_as_they_are() {
        let config = json!({ "a": [1, "two", { "b": null }], "c": "{ x }" });
        let template = ConfigTemplate::parse(&config).unwrap();
        assert!(template.is_static());
        assert!(template.references().is_empty());
        let inputs = Map::new();
        let secrets = MapSecrets::new();
        assert_eq!(
            template.render(&Scope::new(&inputs, &secrets)).unwrap(),
            config
        );
        let root = ConfigTemplate::parse(&json!("{{ input.n }}")).unwrap();
        assert_eq!(root.paths().collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn config_errors_are_all_reported_with_paths() {
        let config = json!({
            "headers": { "Authorization": "{{ foo }}", "Content-Type": "{{ input[x] }}" },
            "items": [1, 2, "{% include 'x' %}", "{{ ok }"],
            "fine": "{{ input.n }}",
        });
        let errors = ConfigTemplate::parse(&config).unwrap_err();
        let paths: Vec<_> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "headers.Authorization",
                "headers.Content-Type",
                "items[2]",
                "items[3]"
            ]
        );
        assert!(matches!(errors[0].1, ExprError::UnknownVariable { .. }));
        assert!(matches!(errors[1].1, ExprError::BadReference { .. }));
        assert!(matches!(errors[2].1, ExprError::Unsupported { .. }));
        assert!(matches!(errors[3].1, ExprError::Syntax { .. }));

        let odd = json!({ "a b": { "x.y": "{{ nope }}" } });
        let errors = ConfigTemplate::parse(&odd).unwrap_err();
        assert_eq!(errors[0].0, "[\"a b\"][\"x.y\"]");
    }

    #[test]
    fn config_render_errors_name_the_path() {
        let config = json!({ "a": "{{ input.n }}", "b": ["x", "{{ input.nope }}"] });
        let template = ConfigTemplate::parse(&config).unwrap();
        let inputs = sample_inputs();
        let secrets = MapSecrets::new();
        let (path, err) = template.render(&Scope::new(&inputs, &secrets)).unwrap_err();
        assert_eq!(path, "b[1]");
        assert!(matches!(err, ExprError::MissingInput { .. }));
    }

    // --- never panics --------------------------------------------------

    fn fragment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "{{",
            "}}",
            "{%",
            "%}",
            "{#",
            "#}",
            "{{-",
            "-}}",
            "input.",
            "input",
            "nodes.a.b",
            "nodes",
            "nodes[",
            "secrets.K",
            "secrets.",
            "env.HOME",
            "env",
            ".",
            "[",
            "]",
            "(",
            ")",
            "{",
            "}",
            "'",
            "\"",
            "\\",
            "+",
            "-",
            "*",
            "/",
            "//",
            "%",
            "**",
            "~",
            "|",
            "upper",
            "default(",
            "tojson",
            "length",
            "join",
            "int",
            "range(",
            "1",
            "0",
            "1000000",
            "-1",
            "1.5",
            "1e400",
            "x",
            "n",
            "name",
            " ",
            "\n",
            "if ",
            "for ",
            "in ",
            "endif",
            "endfor",
            "set ",
            "=",
            "==",
            "raw",
            "endraw",
            ",",
            ":",
            "é",
            "\u{0}",
            "is ",
            "defined",
            "not ",
            "and ",
            "or ",
            "loop.index",
            "none",
            "true",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parse_and_render_never_panic(parts in prop::collection::vec(fragment(), 0..24)) {
            let source: String = parts.concat();
            let inputs = object(json!({ "x": 1, "n": "name", "name": [1, 2] }));
            let nodes = sample_nodes();
            let secrets = secrets();
            let scope = Scope::new(&inputs, &secrets).with_nodes(&nodes).with_env(EnvAccess::All);
            if let Ok(template) = Template::parse(&source) {
                let _ = template.render(&scope);
            }
            let config = json!({ "a": source, "b": [source] });
            if let Ok(template) = ConfigTemplate::parse(&config) {
                let _ = template.render(&scope);
            }
        }
    }
}
