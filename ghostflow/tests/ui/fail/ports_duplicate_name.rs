use ghostflow::prelude::*;

/// Two texts.
#[derive(Ports)]
pub struct Texts {
    /// The first text.
    pub text: String,
    /// The second text.
    #[port(name = "text")]
    pub other: String,
}

fn main() {}
