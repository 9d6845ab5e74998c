//! Reading document bytes: YAML or JSON to a JSON value, with the line and
//! column of every value, and limits on size and nesting.
