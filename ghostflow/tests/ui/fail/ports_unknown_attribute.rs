use ghostflow::prelude::*;

/// A text.
#[derive(Ports)]
#[ports(handle = TextHandles)]
pub struct Text {
    /// The text.
    pub text: String,
}

fn main() {}
