//! Checks that need the whole input: item shapes, generics, names.
//!
//! Attribute syntax is checked while parsing ([`crate::attr`]); what the
//! compiler can check better (trait bounds) is left to the generated code.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Data, DeriveInput, Fields, GenericParam, Ident};

use crate::ast::{NodeItem, PortsStruct};
use crate::errors::Errors;
use crate::text::{is_node_name, is_port_name};

/// The most ports one struct can have: port positions are `u16`.
pub(crate) const MAX_PORTS: usize = u16::MAX as usize;

/// Checks a `#[derive(Ports)]` input.
pub(crate) fn ports(item: &PortsStruct<'_>, errors: &mut Errors) {
    let input = item.original;
    let ident = &input.ident;
    match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(_) => {}
            Fields::Unnamed(fields) => errors.at(
                fields,
                format_args!(
                    "`Ports` needs named fields, one per port: `{ident}` is a tuple struct; \
                     write `struct {ident} {{ name: Type, .. }}`"
                ),
            ),
            Fields::Unit => errors.at(
                ident,
                format_args!(
                    "`Ports` needs named fields, one per port: `{ident}` is a unit struct; \
                     use `()` for a node without ports"
                ),
            ),
        },
        Data::Enum(data) => errors.at(
            spanned_from(&data.enum_token, ident),
            format_args!(
                "`Ports` can only be derived for a struct with named fields, one per port: \
                 `{ident}` is an enum; to model alternatives, use one `Option` field per branch"
            ),
        ),
        Data::Union(data) => errors.at(
            spanned_from(&data.union_token, ident),
            format_args!(
                "`Ports` can only be derived for a struct with named fields, one per port: \
                 `{ident}` is a union"
            ),
        ),
    }
    no_lifetimes(
        input,
        "a ports struct",
        "port values travel between tasks",
        errors,
    );

    let Some(fields) = &item.fields else { return };
    if fields.len() > MAX_PORTS {
        errors.at(
            ident,
            format_args!(
                "`{ident}` has {} fields; a ports struct can have at most {MAX_PORTS}",
                fields.len()
            ),
        );
    }
    let mut names = HashSet::with_capacity(fields.len());
    for field in fields {
        if let Some(rename) = &field.attrs.name
            && !is_port_name(&field.name)
        {
            errors.at(
                rename,
                format_args!(
                    "invalid port name {:?}: use ASCII letters, digits and `_`",
                    field.name
                ),
            );
        }
        if !names.insert(field.name.as_str()) {
            match &field.attrs.name {
                Some(rename) => {
                    errors.at(rename, format_args!("duplicate port name `{}`", field.name))
                }
                None => errors.at(
                    field.member,
                    format_args!("duplicate port name `{}`", field.name),
                ),
            }
        }
    }
}

/// Checks a `#[derive(Node)]` input.
pub(crate) fn node(item: &NodeItem<'_>, errors: &mut Errors) {
    let input = item.original;
    let ident = &input.ident;
    if let Data::Union(data) = &input.data {
        errors.at(
            spanned_from(&data.union_token, ident),
            "`Node` can be derived for structs and enums, not unions: the configuration must be serializable",
        );
    }
    no_lifetimes(
        input,
        "a node configuration",
        "nodes are stored and run on other tasks",
        errors,
    );

    if !is_node_name(&item.type_name) {
        match &item.attrs.name {
            Some(lit) => errors.at(
                lit,
                format_args!(
                    "invalid node name {:?}: use lowercase ASCII letters, digits and `_`, such as \"count_words\"",
                    item.type_name
                ),
            ),
            None => errors.at(
                ident,
                format_args!(
                    "cannot make a node name from `{ident}` (got {:?}); set one with \
                     `#[node(name = \"...\")]`, using lowercase ASCII letters, digits and `_`",
                    item.type_name
                ),
            ),
        }
    }
    for (key, lit) in [
        ("version", &item.attrs.version),
        ("category", &item.attrs.category),
    ] {
        if let Some(lit) = lit
            && lit.value().trim().is_empty()
        {
            errors.at(lit, format_args!("`{key}` must not be empty"));
        }
    }
}

/// Tokens from `keyword` to `ident` (`enum Choice`), for an error covering both.
fn spanned_from(keyword: &impl ToTokens, ident: &Ident) -> TokenStream {
    quote!(#keyword #ident)
}

/// Reports every lifetime parameter of `input`: ports and configs are `'static`.
fn no_lifetimes(input: &DeriveInput, what: &str, why: &str, errors: &mut Errors) {
    for param in &input.generics.params {
        if let GenericParam::Lifetime(lifetime) = param {
            errors.at(
                &lifetime.lifetime,
                format_args!(
                    "{what} cannot have lifetime parameters: {why}, so they must own their data"
                ),
            );
        }
    }
}

/// Whether `input` has lifetime parameters, which no impl can be generated for.
pub(crate) fn has_lifetimes(input: &DeriveInput) -> bool {
    input.generics.lifetimes().next().is_some()
}
