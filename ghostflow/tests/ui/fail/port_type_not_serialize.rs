use ghostflow::prelude::*;

/// A point, missing `Serialize`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
pub struct Point {
    /// Horizontal.
    pub x: f64,
}

/// Ports carrying points.
#[derive(Ports)]
pub struct Points {
    /// A name.
    pub name: String,
    /// The point.
    pub point: Point,
}

fn main() {}
