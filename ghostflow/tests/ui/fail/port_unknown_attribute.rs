use ghostflow::prelude::*;

/// A text.
#[derive(Ports)]
pub struct Text {
    /// The text.
    #[port(rename = "body")]
    pub text: String,
}

fn main() {}
