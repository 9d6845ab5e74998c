//! The passes, in order: attributes and AST ([`crate::ast`]), validation
//! ([`crate::valid`]), then code generation ([`ports`], [`node`]), or the
//! fallback ([`crate::fallback`]) when something was wrong.

pub(crate) mod node;
pub(crate) mod ports;

use proc_macro2::{Ident, TokenStream};
use quote::quote;
use syn::{DeriveInput, GenericParam, Generics};

use crate::ast::{NodeItem, PortsStruct};
use crate::errors::{Errors, Failure};
use crate::{fallback, valid};

/// Expands `#[derive(Ports)]`.
pub(crate) fn derive_ports(input: &DeriveInput) -> Result<TokenStream, Failure> {
    let mut errors = Errors::new();
    let item = PortsStruct::from_syn(input, &mut errors);
    valid::ports(&item, &mut errors);
    match (errors.finish(), &item.fields) {
        (Ok(()), Some(fields)) => Ok(ports::expand(&item, fields)),
        (Ok(()), None) => unreachable!("validation rejects inputs without named fields"),
        (Err(error), _) => Err(Failure {
            error,
            fallback: fallback::ports(&item),
        }),
    }
}

/// Expands `#[derive(Node)]`.
pub(crate) fn derive_node(input: &DeriveInput) -> Result<TokenStream, Failure> {
    let mut errors = Errors::new();
    let item = NodeItem::from_syn(input, &mut errors);
    valid::node(&item, &mut errors);
    match errors.finish() {
        Ok(()) => Ok(node::expand(&item, node::RunCheck::Emit)),
        Err(error) => Err(Failure {
            error,
            fallback: fallback::node(&item),
        }),
    }
}

/// Where generated code finds the runtime: `::ghostflow::__private`.
pub(crate) fn runtime() -> TokenStream {
    quote!(::ghostflow::__private)
}

/// The names of the type and const parameters of `generics`.
pub(crate) fn param_names(generics: &Generics) -> Vec<Ident> {
    generics
        .params
        .iter()
        .filter_map(|param| match param {
            GenericParam::Type(param) => Some(param.ident.clone()),
            GenericParam::Const(param) => Some(param.ident.clone()),
            GenericParam::Lifetime(_) => None,
        })
        .collect()
}
