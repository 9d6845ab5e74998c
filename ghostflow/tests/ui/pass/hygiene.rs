//! The derives work without the prelude, with raw identifiers, with full
//! `Option` paths, and next to user types named like generated parameters.
#![no_implicit_prelude]

extern crate ghostflow;
extern crate serde;
extern crate schemars;
extern crate std;

use std::string::String;

/// A user type named `D`, like the handles' direction parameter.
#[derive(
    ::std::clone::Clone,
    ::std::fmt::Debug,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct D {
    /// A value.
    pub value: u8,
}

/// Ports with awkward names and types.
#[derive(ghostflow::Ports)]
pub struct Awkward {
    /// A raw identifier.
    pub r#type: String,
    /// A fully spelled option.
    pub maybe: ::core::option::Option<u8>,
    /// Another spelling.
    pub perhaps: std::option::Option<D>,
    /// The type named `D`.
    pub d: D,
}

/// Configuration named with a raw identifier.
#[derive(
    ghostflow::Node,
    ::std::clone::Clone,
    ::std::fmt::Debug,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[node(input = Awkward, output = Awkward)]
pub struct r#HTTPRequest {}

impl ghostflow::Run for HTTPRequest {
    async fn run(
        &self,
        input: Awkward,
        _ctx: &ghostflow::Context,
    ) -> ::std::result::Result<Awkward, ghostflow::NodeError> {
        ::std::result::Result::Ok(input)
    }
}

fn main() {
    let spec = <HTTPRequest as ghostflow::Node>::spec();
    ::std::assert_eq!(spec.type_name, "http_request");
    ::std::assert_eq!(spec.inputs[0].name, "type");
    ::std::assert!(!spec.inputs[1].required);
    ::std::assert!(!spec.inputs[2].required);
    ::std::assert_eq!(spec.inputs[3].type_name, ::std::any::type_name::<D>());
    let _: fn(AwkwardPorts<ghostflow::In>) -> ghostflow::Port<ghostflow::In, D> = |p| p.d;
}
