use ghostflow::prelude::*;

/// A point, missing `JsonSchema`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    /// Horizontal.
    pub x: f64,
}

/// Ports carrying points.
#[derive(Ports)]
pub struct Points {
    /// Maybe a point.
    pub point: Option<Point>,
}

fn main() {}
