//! Text nodes: templates ([`Template`]), regular expressions
//! ([`RegexMatch`], [`RegexExtract`], [`RegexReplace`]), digests
//! ([`Hash`](struct@Hash)), keyed signatures ([`Hmac`]) and base64 ([`Base64`]).
//!
//! - **Text is UTF-8; bytes are base64.** Ports carry strings. Where a node
//!   works on bytes (a digest of a file, a signature of a raw body), it
//!   reads them as base64 when told so (`input: base64`), the form in which
//!   `file_read` (`format: bytes`) and `http_request` (`response: bytes`)
//!   give them.
//! - **Patterns are checked when the flow loads.** A regular expression
//!   that does not compile fails the document at `config.pattern` with the
//!   `regex` crate's message. Matching takes time linear in the text (the
//!   crate has no backtracking, hence no look-around or back-references),
//!   so a pattern cannot make a flow hang; compiled patterns are limited to
//!   [`MAX_COMPILED_PATTERN_BYTES`], and outputs are bounded
//!   (`max_matches`, `max_bytes`).
//! - **Errors say what and where.** A bad input names its port
//!   (`input `text`: ...`), a setting that only turns out wrong when the
//!   pattern is compiled with its flags names its field
//!   (`config.group: ...`); all of these are permanent: retrying cannot
//!   fix them.
//! - **Secrets.** The `hmac` key is a secret named in the config
//!   (`key_secret: WEBHOOK_SECRET`), read when the node runs; it never
//!   appears in the config, an output, an event or an error. Verification
//!   compares signatures in constant time.

mod digest;
mod encoding;
mod regex;

use ghostflow::Registry;
use ghostflow::expr::TextTemplate;
use ghostflow::prelude::*;
use serde::Deserializer;

pub use self::digest::{
    DataFormat, DigestEncoding, Hash, HashAlgorithm, HashInput, HashOutput, Hmac, HmacAlgorithm,
    HmacInput, HmacMode, HmacOutput, KeyFormat, OnMismatch,
};
pub use self::encoding::{Alphabet, Base64, Base64Mode, Base64Output, Base64Text};
pub use self::regex::{
    GroupRef, MAX_COMPILED_PATTERN_BYTES, RegexExtract, RegexExtractOutput, RegexMatch,
    RegexMatchOutput, RegexReplace, RegexReplaceOutput, RegexText, TextMatch,
};

/// Registers the text nodes.
pub(crate) fn register(registry: &mut Registry) {
    registry
        .register::<Template>()
        .register::<RegexMatch>()
        .register::<RegexExtract>()
        .register::<RegexReplace>()
        .register::<Hash>()
        .register::<Hmac>()
        .register::<Base64>();
}

/// What a template can read.
#[derive(Ports, Debug)]
pub struct TemplateData {
    /// Readable in the template as `data`; `null` when not connected.
    pub data: Option<serde_json::Value>,
}

/// A text.
#[derive(Ports, Debug)]
pub struct TextOut {
    /// The rendered text.
    pub text: String,
}

/// Renders a text template with its `data` input.
///
/// Templates run in the same sandbox as expressions (minijinja syntax:
/// `Hello {{ data.name | title }}!`,
/// `{% for item in data.items %}- {{ item }}\n{% endfor %}`). The template
/// is the node's own: documents do not evaluate it as an expression, and a
/// syntax error is reported when the flow is loaded.
///
/// ```yaml
/// - id: greeting
///   type: template
///   config:
///     template: "Hello {{ data.name | title }}, you have {{ data.items | length }} items."
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = TemplateData, output = TextOut, category = "text")]
pub struct Template {
    /// The template; reads the `data` input as `data`.
    #[serde(deserialize_with = "template_text")]
    #[schemars(extend("x-template" = true))]
    pub template: String,
}

/// Accepts a string that parses as a template.
fn template_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    TextTemplate::parse(&text).map_err(serde::de::Error::custom)?;
    Ok(text)
}

impl Run for Template {
    async fn run(&self, input: TemplateData, _ctx: &Context) -> Result<TextOut, NodeError> {
        let template = TextTemplate::parse(&self.template)
            .map_err(|e| NodeError::permanent(format!("template: {e}")))?;
        let data = input.data.unwrap_or(serde_json::Value::Null);
        let text = template
            .render(&serde_json::json!({ "data": data }))
            .map_err(|e| NodeError::permanent(format!("template: {e}")))?;
        Ok(TextOut { text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghostflow::Inputs;

    fn flow(template: &str) -> Flow {
        let mut b = Flow::builder("template");
        let data = b.input::<serde_json::Value>("data");
        let t = b.add(
            "t",
            Template {
                template: template.into(),
            },
        );
        b.connect(data, t.inp().data);
        b.output("text", t.out().text);
        b.build().unwrap()
    }

    #[tokio::test]
    async fn renders_its_data_and_reports_what_is_missing() {
        let outcome = Engine::new()
            .run(
                &flow("{% for x in data.items %}{{ x | upper }}{% if not loop.last %}, {% endif %}{% endfor %}"),
                Inputs::new().set("data", serde_json::json!({"items": ["a", "b"]})),
            )
            .await
            .unwrap();
        assert_eq!(outcome.output::<String>("text").unwrap(), "A, B");
        let err = Engine::new()
            .run(
                &flow("{{ data.nope.deeper }}"),
                Inputs::new().set("data", serde_json::json!({})),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("node `t` failed"), "{err}");
        assert!(err.to_string().contains("template:"), "{err}");
    }

    #[test]
    fn a_template_with_a_syntax_error_does_not_deserialize() {
        let err = serde_json::from_value::<Template>(serde_json::json!({"template": "{{ x + }}"}))
            .unwrap_err();
        assert!(err.to_string().contains("syntax error"), "{err}");
        let spec = Template::spec();
        assert_eq!(
            spec.config_schema["properties"]["template"]["x-template"],
            serde_json::json!(true)
        );
    }
}
