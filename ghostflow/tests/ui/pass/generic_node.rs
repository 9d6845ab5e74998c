//! A generic node whose output port carries its type parameter.

use std::marker::PhantomData;

use ghostflow::PortValue;
use ghostflow::prelude::*;

/// Reads a value of type `T` out of a JSON document.
#[derive(Node, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Document, output = Extracted<T>)]
pub struct Extract<T> {
    /// JSON pointer to the value.
    pub pointer: String,
    #[serde(skip)]
    #[schemars(skip)]
    _marker: PhantomData<fn() -> T>,
}

/// A JSON document.
#[derive(Ports)]
pub struct Document {
    /// The document.
    pub json: serde_json::Value,
}

/// The extracted value.
#[derive(Ports)]
pub struct Extracted<T> {
    /// The value, if the pointer matched.
    pub value: Option<T>,
    /// Every value in the document's list under the pointer.
    pub all: Vec<T>,
}

impl<T: PortValue> Run for Extract<T> {
    async fn run(&self, input: Document, _ctx: &Context) -> Result<Extracted<T>, NodeError> {
        let value = input
            .json
            .pointer(&self.pointer)
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| NodeError::permanent(e.to_string()))?;
        Ok(Extracted {
            value,
            all: Vec::new(),
        })
    }
}

fn main() {
    let spec = Extract::<u64>::spec();
    assert_eq!(spec.type_name, "extract");
    assert_eq!(spec.outputs[0].name, "value");
    assert_eq!(spec.outputs[0].type_name, "u64");

    let mut b = Flow::builder("extract");
    let doc = b.input::<serde_json::Value>("doc");
    let extract = b.add(
        "extract",
        Extract::<u64> {
            pointer: "/n".into(),
            _marker: PhantomData,
        },
    );
    b.connect(doc, extract.inp().json);
    let value: ghostflow::Port<ghostflow::Out, u64> = extract.out().value;
    b.output("n", value);
    b.build().unwrap();
}
