//! Code generation for `#[derive(Node)]`.
//!
//! Emits `impl Node` (the spec, built from the attribute, the doc comment and
//! the config's JSON Schema) and, for a non-generic node, a check that the
//! type implements `Run`. Each requirement is checked at one place, aimed at
//! the token that must change:
//!
//! - `Serialize` and `JsonSchema` for the config: the uses in the impl body
//!   are spanned on the type's name;
//! - `Ports` for the input and output: `type Input = ..` reuses the tokens of
//!   the attribute, so the error lands there;
//! - `Run`: a call of `must_implement_run::<Name>` spanned on the type's name.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::{Type, WherePredicate, parse_quote};

use super::{param_names, runtime};
use crate::ast::{NodeItem, mentions};

/// Whether to emit the `Run` check: not when other errors were found already.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunCheck {
    /// Check that the type implements `Run`.
    Emit,
    /// Leave it out.
    Skip,
}

/// `impl Node for X` and its checks.
pub(crate) fn expand(item: &NodeItem<'_>, run_check: RunCheck) -> TokenStream {
    let rt = runtime();
    let input = item.original;
    let ident = &input.ident;
    let span = ident.span();
    let input_ty = port_type(item.attrs.input.as_ref());
    let output_ty = port_type(item.attrs.output.as_ref());

    let generic = !param_names(&input.generics).is_empty();
    let mut generics = input.generics.clone();
    if generic {
        let predicates = bounds(item, &input_ty, &output_ty);
        generics.make_where_clause().predicates.extend(predicates);
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let type_name = &item.type_name;
    let version = item
        .attrs
        .version
        .as_ref()
        .map_or_else(|| "1".to_owned(), |lit| lit.value());
    let category = item
        .attrs
        .category
        .as_ref()
        .map_or_else(|| "general".to_owned(), |lit| lit.value());
    let description = &item.description;

    let schema = quote_spanned! {span=>
        <#rt::schemars::SchemaGenerator as ::core::default::Default>::default()
            .into_root_schema_for::<Self>()
            .to_value()
    };
    let serialize = quote_spanned! {span=>
        <Self as #rt::serde::Serialize>::serialize(self, #rt::serde_json::value::Serializer)
    };
    let run_check = (run_check == RunCheck::Emit && !generic).then(|| {
        let call = quote_spanned!(span=> must_implement_run::<#ident>);
        quote! {
            fn must_implement_run<N: #rt::Run>() {}
            let _ = #call;
        }
    });

    quote! {
        const _: () = {
            /// The port specs of a node, read through `Node` so that a bad
            /// `Input` or `Output` is reported once, on the attribute.
            fn __port_specs<N: #rt::Node>() -> (#rt::Vec<#rt::PortSpec>, #rt::Vec<#rt::PortSpec>) {
                (
                    <<N as #rt::Node>::Input as #rt::Ports>::port_specs(),
                    <<N as #rt::Node>::Output as #rt::Ports>::port_specs(),
                )
            }

            impl #impl_generics #rt::Node for #ident #ty_generics #where_clause {
                type Input = #input_ty;
                type Output = #output_ty;

                fn spec() -> #rt::NodeSpec {
                    let (inputs, outputs) = __port_specs::<Self>();
                    #rt::NodeSpec {
                        type_name: ::core::convert::From::from(#type_name),
                        version: ::core::convert::From::from(#version),
                        description: ::core::convert::From::from(#description),
                        category: ::core::convert::From::from(#category),
                        config_schema: #schema,
                        inputs,
                        outputs,
                    }
                }

                fn config_json(
                    &self,
                ) -> #rt::Result<#rt::serde_json::Value, #rt::serde_json::Error> {
                    #serialize
                }
            }

            #run_check
        };
    }
}

/// The tokens of an `input`/`output` setting, `()` when absent.
fn port_type(ty: Option<&Type>) -> TokenStream {
    ty.map_or_else(|| quote!(()), ToTokens::to_token_stream)
}

/// The where-clause additions of a generic node: the config is serializable,
/// described by a schema, shareable and `'static`, and the ports structs that
/// use the parameters are ports.
fn bounds(
    item: &NodeItem<'_>,
    input_ty: &TokenStream,
    output_ty: &TokenStream,
) -> Vec<WherePredicate> {
    let rt = runtime();
    let generics = &item.original.generics;
    let ident = &item.original.ident;
    let (_, ty_generics, _) = generics.split_for_impl();
    let params = param_names(generics);
    let params: Vec<_> = params.iter().collect();
    let mut predicates: Vec<WherePredicate> = vec![parse_quote! {
        #ident #ty_generics: #rt::serde::Serialize
            + #rt::schemars::JsonSchema
            + ::core::marker::Send
            + ::core::marker::Sync
            + 'static
    }];
    predicates.extend(generics.type_params().map(|param| -> WherePredicate {
        let ident = &param.ident;
        parse_quote!(#ident: 'static)
    }));
    for ty in [input_ty, output_ty] {
        if mentions(ty, &params) {
            predicates.push(parse_quote!(#ty: #rt::Ports));
        }
    }
    predicates
}
