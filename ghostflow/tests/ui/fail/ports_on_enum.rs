use ghostflow::prelude::*;

/// Either a text or a number.
#[derive(Ports)]
pub enum Value {
    /// A text.
    Text(String),
    /// A number.
    Number(u64),
}

fn main() {}
