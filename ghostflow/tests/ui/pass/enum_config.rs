//! A node whose configuration is an enum.

use ghostflow::prelude::*;

/// Changes the case of a text.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Text, output = Text)]
#[serde(rename_all = "snake_case")]
pub enum ChangeCase {
    /// All capitals.
    Upper,
    /// No capitals.
    Lower,
}

/// A text.
#[derive(Ports)]
pub struct Text {
    /// The text.
    pub text: String,
}

impl Run for ChangeCase {
    async fn run(&self, input: Text, _ctx: &Context) -> Result<Text, NodeError> {
        let text = match self {
            ChangeCase::Upper => input.text.to_uppercase(),
            ChangeCase::Lower => input.text.to_lowercase(),
        };
        Ok(Text { text })
    }
}

fn main() {
    let spec = ChangeCase::spec();
    assert_eq!(spec.type_name, "change_case");
    assert_eq!(
        ChangeCase::Upper.config_json().unwrap(),
        serde_json::json!("upper")
    );
}
