//! Text nodes: render templates.

use ghostflow::Registry;
use ghostflow::expr::TextTemplate;
use ghostflow::prelude::*;

/// Registers the text nodes.
pub(crate) fn register(registry: &mut Registry) {
    registry.register::<Template>();
}
use serde::Deserializer;

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
