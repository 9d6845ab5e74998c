use ghostflow::prelude::*;

/// A text.
#[derive(Ports)]
pub struct Text(pub String);

fn main() {}
