//! Expressions in node configurations: sandboxed templates evaluated per
//! execution.
