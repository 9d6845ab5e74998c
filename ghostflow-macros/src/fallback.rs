//! What to emit beside the errors when a derive fails.
//!
//! The aim is that the user sees the derive's errors and nothing else: code
//! that names the type as a node, or implements `Run` for it, keeps compiling.

use proc_macro2::TokenStream;

use crate::ast::{NodeItem, PortsStruct};
use crate::expand::{node, ports};
use crate::valid::{MAX_PORTS, has_lifetimes};

/// For `#[derive(Ports)]`: the full expansion when the struct itself is fine
/// (only an attribute was wrong), a `Ports` impl without ports when it is not
/// a struct with named fields, nothing when it has lifetime parameters (no
/// impl of a `'static` trait can exist for it).
pub(crate) fn ports(item: &PortsStruct<'_>) -> TokenStream {
    if has_lifetimes(item.original) {
        return TokenStream::new();
    }
    match &item.fields {
        Some(fields) if fields.len() <= MAX_PORTS => ports::expand(item, fields),
        _ => ports::stub(item),
    }
}

/// For `#[derive(Node)]`: the `Node` impl built from whatever the attribute
/// gave, without the `Run` check; nothing when the type has lifetime
/// parameters.
pub(crate) fn node(item: &NodeItem<'_>) -> TokenStream {
    if has_lifetimes(item.original) {
        return TokenStream::new();
    }
    node::expand(item, node::RunCheck::Skip)
}
