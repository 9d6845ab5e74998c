//! The derives expand to code that works without the prelude, with raw
//! identifiers, with fully spelled `Option` paths, and next to a user type
//! named like the handles' direction parameter.

use ghostflow::prelude::*;

/// A user type named `D`, like the handles' direction parameter.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct D {
    /// A value.
    pub value: u8,
}

/// Configuration of [`no_prelude::r#HTTPRequest`], whose schema is written
/// here because `schemars`' derive needs the prelude.
impl JsonSchema for no_prelude::HTTPRequest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HTTPRequest".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "object" })
    }
}

/// Items declared without the prelude.
pub mod no_prelude {
    #![no_implicit_prelude]

    use ::std::string::String;

    use super::D;

    /// Ports with awkward names and types.
    #[derive(::ghostflow::Ports)]
    pub struct Awkward {
        /// A raw identifier.
        pub r#type: String,
        /// A fully spelled option.
        pub maybe: ::core::option::Option<u8>,
        /// Another spelling.
        pub perhaps: ::std::option::Option<D>,
        /// The type named `D`.
        pub d: D,
    }

    /// Configuration named with a raw identifier.
    #[derive(::ghostflow::Node, ::serde::Serialize)]
    #[node(input = Awkward, output = Awkward)]
    pub struct r#HTTPRequest {}

    impl ::ghostflow::Run for HTTPRequest {
        async fn run(
            &self,
            input: Awkward,
            _ctx: &::ghostflow::Context,
        ) -> ::std::result::Result<Awkward, ::ghostflow::NodeError> {
            ::std::result::Result::Ok(input)
        }
    }
}

use no_prelude::{Awkward, AwkwardPorts, HTTPRequest};

fn main() {
    let spec = HTTPRequest::spec();
    assert_eq!(spec.type_name, "http_request");
    assert_eq!(spec.inputs[0].name, "type");
    assert!(!spec.inputs[1].required);
    assert!(!spec.inputs[2].required);
    assert_eq!(spec.inputs[3].type_name, std::any::type_name::<D>());
    assert_eq!(<Awkward as Ports>::LEN, 4);
    let _: fn(AwkwardPorts<ghostflow::In>) -> ghostflow::Port<ghostflow::In, D> = |p| p.d;
}
