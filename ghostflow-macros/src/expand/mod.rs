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

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(failure: Failure) -> Vec<String> {
        failure.error.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn every_node_attribute_mistake_is_reported_at_once() {
        let input: DeriveInput = syn::parse_quote! {
            #[node(inputs = Text, name = "Bad Name", version = 2, name = "again")]
            #[node(category = "")]
            struct CountWords<'a>(&'a str);
        };
        let failure = derive_node(&input).expect_err("the input has mistakes");
        assert!(
            failure.fallback.is_empty(),
            "no impl for a type with lifetimes"
        );
        assert_eq!(
            messages(failure),
            [
                "unknown attribute `inputs`; expected one of input, output, name, version, category",
                "expected a string literal, as in `version = \"2\"`",
                "duplicate attribute `name`",
                "a node configuration cannot have lifetime parameters: nodes are stored and run on other tasks, so they must own their data",
                "invalid node name \"Bad Name\": use lowercase ASCII letters, digits and `_`, such as \"count_words\"",
                "`category` must not be empty",
            ]
        );
    }

    #[test]
    fn a_misspelled_key_still_feeds_the_fallback() {
        let input: DeriveInput = syn::parse_quote! {
            #[node(inputs = Text)]
            struct CountWords;
        };
        let failure = derive_node(&input).expect_err("`inputs` is unknown");
        let fallback = failure.fallback.to_string();
        assert!(fallback.contains("type Input = Text"), "{fallback}");
        assert!(!fallback.contains("must_implement_run"), "{fallback}");
    }

    #[test]
    fn default_node_names_must_be_valid() {
        let input: DeriveInput = syn::parse_quote!(
            struct Größe;
        );
        let failure = derive_node(&input).expect_err("not ASCII");
        assert!(messages(failure)[0].starts_with("cannot make a node name from `Größe`"));
    }

    #[test]
    fn a_good_node_expands_with_its_run_check() {
        let input: DeriveInput = syn::parse_quote! {
            #[node(output = Out)]
            struct Emit;
        };
        let tokens = derive_node(&input).expect("valid").to_string();
        assert!(
            tokens.contains("must_implement_run :: < Emit >"),
            "{tokens}"
        );
        assert!(tokens.contains("\"emit\""), "{tokens}");
        assert!(tokens.contains("type Input = ()"), "{tokens}");
    }

    #[test]
    fn generic_nodes_are_bounded_and_not_run_checked() {
        let input: DeriveInput = syn::parse_quote! {
            #[node(input = In, output = Extracted<T>)]
            struct Extract<T> { pointer: String }
        };
        let tokens = derive_node(&input).expect("valid").to_string();
        assert!(
            tokens.contains("Extracted < T > : :: ghostflow :: __private :: Ports"),
            "{tokens}"
        );
        assert!(!tokens.contains("In : :: ghostflow"), "{tokens}");
        assert!(tokens.contains("T : 'static"), "{tokens}");
        assert!(!tokens.contains("must_implement_run"), "{tokens}");
    }

    #[test]
    fn ports_reject_non_structs_with_a_stub() {
        let input: DeriveInput = syn::parse_quote! {
            enum Choice { A(u8) }
        };
        let failure = derive_ports(&input).expect_err("enums are not ports");
        assert!(failure.fallback.to_string().contains("type Handles < D"));
        assert!(messages(failure)[0].contains("`Choice` is an enum"));
    }

    #[test]
    fn ports_attribute_mistakes_keep_the_full_expansion() {
        let input: DeriveInput = syn::parse_quote! {
            #[ports(handles = "Names", colour = red)]
            struct Text {
                #[port(name = "a b")]
                a: String,
                #[port(name = 1, name = "c")]
                b: String,
            }
        };
        let failure = derive_ports(&input).expect_err("mistakes");
        let fallback = failure.fallback.to_string();
        assert!(fallback.contains("struct Names < D >"), "{fallback}");
        assert_eq!(
            messages(failure),
            [
                "expected an identifier, not a string, as in `handles = TextHandles`",
                "unknown attribute `colour`; expected handles",
                "expected a string literal, as in `name = \"text\"`",
                "duplicate attribute `name`",
                "invalid port name \"a b\": use ASCII letters, digits and `_`",
            ]
        );
    }

    #[test]
    fn ports_with_lifetimes_get_no_impl() {
        let input: DeriveInput = syn::parse_quote!(
            struct Text<'a> {
                text: &'a str,
            }
        );
        let failure = derive_ports(&input).expect_err("lifetimes");
        assert!(failure.fallback.is_empty());
    }

    #[test]
    fn too_many_ports_are_rejected() {
        let fields: Vec<String> = (0..=valid::MAX_PORTS)
            .map(|i| format!("f{i}: u8"))
            .collect();
        let input: DeriveInput =
            syn::parse_str(&format!("struct Wide {{ {} }}", fields.join(", "))).unwrap();
        let failure = derive_ports(&input).expect_err("65536 fields");
        assert!(
            failure
                .fallback
                .to_string()
                .contains("const LEN : usize = 0")
        );
        assert_eq!(
            messages(failure),
            ["`Wide` has 65536 fields; a ports struct can have at most 65535"]
        );
    }

    #[test]
    fn handle_direction_avoids_names_in_use() {
        let input: DeriveInput = syn::parse_quote! {
            struct Odd<D> { a: D, b: Dir }
        };
        let tokens = derive_ports(&input).expect("valid").to_string();
        assert!(tokens.contains("struct OddPorts < __D , D >"), "{tokens}");
    }
}
