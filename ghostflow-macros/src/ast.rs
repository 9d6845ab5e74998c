//! The derive inputs, read into the shape the code generators need.
//!
//! Every piece keeps a reference to the `syn` node it came from, so that later
//! passes can aim errors at the exact token.

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::{ToTokens, format_ident};
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Field, Fields, GenericArgument, PathArguments, Type};

use crate::attr::{NodeAttrs, PortAttrs, PortsAttrs};
use crate::errors::Errors;
use crate::text::{description, snake_case};

/// The input of `#[derive(Ports)]`.
pub(crate) struct PortsStruct<'a> {
    /// The item as written.
    pub(crate) original: &'a DeriveInput,
    /// Its `#[ports(...)]` settings.
    pub(crate) attrs: PortsAttrs,
    /// One per field, in order; `None` unless the item is a struct with named
    /// fields (validation reports why).
    pub(crate) fields: Option<Vec<PortField<'a>>>,
}

/// One field of a ports struct: one port.
pub(crate) struct PortField<'a> {
    /// The field as written.
    pub(crate) original: &'a Field,
    /// The field's name.
    pub(crate) member: &'a Ident,
    /// Its `#[port(...)]` settings.
    pub(crate) attrs: PortAttrs,
    /// The port's name: the `#[port(name)]` setting, else the field name without `r#`.
    pub(crate) name: String,
    /// The field's doc comment as one string.
    pub(crate) description: Option<String>,
    /// The type of the values the port carries: `T` for an `Option<T>` field.
    pub(crate) ty: &'a Type,
    /// Whether the field is an `Option`: an input that may stay unconnected,
    /// or an output that may stay empty.
    pub(crate) optional: bool,
}

impl<'a> PortsStruct<'a> {
    /// Reads `input`, recording attribute mistakes in `errors`.
    pub(crate) fn from_syn(input: &'a DeriveInput, errors: &mut Errors) -> Self {
        let attrs = PortsAttrs::parse(&input.attrs, errors);
        let fields = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => Some(
                    named
                        .named
                        .iter()
                        .map(|field| PortField::from_syn(field, errors))
                        .collect(),
                ),
                Fields::Unnamed(_) | Fields::Unit => None,
            },
            Data::Enum(_) | Data::Union(_) => None,
        };
        PortsStruct {
            original: input,
            attrs,
            fields,
        }
    }

    /// The name of the handle struct: `#[ports(handles)]`, else `{Name}Ports`.
    pub(crate) fn handles_ident(&self) -> Ident {
        self.attrs
            .handles
            .clone()
            .unwrap_or_else(|| format_ident!("{}Ports", self.original.ident.unraw()))
    }
}

impl<'a> PortField<'a> {
    /// Reads one named field.
    fn from_syn(field: &'a Field, errors: &mut Errors) -> Self {
        let member = field
            .ident
            .as_ref()
            .expect("fields of `Fields::Named` have names");
        let attrs = PortAttrs::parse(&field.attrs, errors);
        let name = attrs
            .name
            .as_ref()
            .map_or_else(|| member.unraw().to_string(), |lit| lit.value());
        let (ty, optional) = match option_inner(&field.ty) {
            Some(inner) => (inner, true),
            None => (&field.ty, false),
        };
        PortField {
            original: field,
            member,
            attrs,
            name,
            description: description(&field.attrs),
            ty,
            optional,
        }
    }
}

/// `Some(T)` when `ty` is spelled `Option<T>`, `std::option::Option<T>` or
/// `core::option::Option<T>` (with or without a leading `::`).
///
/// The check is syntactic: a type alias of `Option` is a required port whose
/// values are options.
pub(crate) fn option_inner(ty: &Type) -> Option<&Type> {
    let path = match ty {
        Type::Path(path) if path.qself.is_none() => &path.path,
        Type::Group(group) => return option_inner(&group.elem),
        Type::Paren(paren) => return option_inner(&paren.elem),
        _ => return None,
    };
    let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let spelled_as_option = match names.as_slice() {
        [one] => one == "Option" && path.leading_colon.is_none(),
        [krate, module, last] => {
            (krate == "std" || krate == "core") && module == "option" && last == "Option"
        }
        _ => false,
    };
    let last = path.segments.last()?;
    let init_has_arguments = path
        .segments
        .iter()
        .rev()
        .skip(1)
        .any(|s| !s.arguments.is_none());
    if !spelled_as_option || init_has_arguments {
        return None;
    }
    match &last.arguments {
        PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            GenericArgument::Type(inner) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the tokens of `ty` mention any of `names` (the item's type and
/// const parameters).
pub(crate) fn mentions(ty: &impl ToTokens, names: &[&Ident]) -> bool {
    fn walk(tokens: TokenStream, names: &[&Ident]) -> bool {
        tokens.into_iter().any(|tree| match tree {
            TokenTree::Ident(ident) => names.iter().any(|name| **name == ident),
            TokenTree::Group(group) => walk(group.stream(), names),
            TokenTree::Punct(_) | TokenTree::Literal(_) => false,
        })
    }
    !names.is_empty() && walk(ty.to_token_stream(), names)
}

/// The input of `#[derive(Node)]`.
pub(crate) struct NodeItem<'a> {
    /// The item as written.
    pub(crate) original: &'a DeriveInput,
    /// Its `#[node(...)]` settings.
    pub(crate) attrs: NodeAttrs,
    /// The node's type name: `#[node(name)]`, else the type name in snake case.
    pub(crate) type_name: String,
    /// The doc comment as one string, empty without one.
    pub(crate) description: String,
}

impl<'a> NodeItem<'a> {
    /// Reads `input`, recording attribute mistakes in `errors`.
    pub(crate) fn from_syn(input: &'a DeriveInput, errors: &mut Errors) -> Self {
        let attrs = NodeAttrs::parse(&input.attrs, errors);
        let type_name = attrs.name.as_ref().map_or_else(
            || snake_case(&input.ident.unraw().to_string()),
            |lit| lit.value(),
        );
        NodeItem {
            original: input,
            attrs,
            type_name,
            description: description(&input.attrs).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner(ty: Type) -> Option<String> {
        option_inner(&ty).map(|t| t.to_token_stream().to_string())
    }

    #[test]
    fn options_are_recognized_by_spelling() {
        assert_eq!(inner(syn::parse_quote!(Option<u8>)).as_deref(), Some("u8"));
        assert_eq!(
            inner(syn::parse_quote!(::std::option::Option<Vec<u8>>)).as_deref(),
            Some("Vec < u8 >")
        );
        assert_eq!(
            inner(syn::parse_quote!(core::option::Option<u8>)).as_deref(),
            Some("u8")
        );
        assert_eq!(inner(syn::parse_quote!(::Option<u8>)), None);
        assert_eq!(inner(syn::parse_quote!(my::Option<u8>)), None);
        assert_eq!(inner(syn::parse_quote!(Vec<Option<u8>>)), None);
        assert_eq!(inner(syn::parse_quote!(Option)), None);
    }

    #[test]
    fn mentions_looks_inside_groups() {
        let t: Ident = format_ident!("T");
        let generic: Type = syn::parse_quote!(Vec<[T; 2]>);
        let concrete: Type = syn::parse_quote!(Vec<u8>);
        assert!(mentions(&generic, &[&t]));
        assert!(!mentions(&concrete, &[&t]));
        assert!(!mentions(&generic, &[]));
    }
}
