//! Code generation for `#[derive(Ports)]`.
//!
//! For `struct Text { text: String, emphasis: Option<u8> }` this emits, beside
//! the struct:
//!
//! - `struct TextPorts<D> { text: Port<D, String>, emphasis: Port<D, u8> }`,
//!   the handles the flow builder hands out, with `Clone`, `Copy` and `Debug`
//!   for every `D`;
//! - `impl Ports for Text`, moving values in and out of per-port slots by
//!   position;
//! - one `assert_port_value::<T>()` per field type, aimed at the field type, so
//!   that a type that cannot travel along an edge is reported there, and
//!   reported once: the impl is bounded by the same requirement (see
//!   [`bounds`]), so its body adds no errors of its own.

use std::collections::HashSet;

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{GenericParam, Type, TypeParam, WherePredicate, parse_quote, parse_quote_spanned};

use super::{param_names, runtime};
use crate::ast::{PortField, PortsStruct, mentions};
use crate::text::doc_attrs;

/// The handle struct, its impls, the field checks and the `Ports` impl.
pub(crate) fn expand(item: &PortsStruct<'_>, fields: &[PortField<'_>]) -> TokenStream {
    let handles = Handles::new(item, fields);
    let declaration = handles.declaration();
    let handle_impls = handles.impls();
    let checks = field_checks(item, fields);
    let ports_impl = ports_impl(item, fields, &handles);
    quote! {
        #declaration
        const _: () = {
            #handle_impls
            #checks
            #ports_impl
        };
    }
}

/// The generated handle struct `{Name}Ports<D, ..>`.
struct Handles<'i, 'a> {
    /// The ports struct it is generated for.
    item: &'i PortsStruct<'a>,
    /// The struct's fields, one handle each.
    fields: &'i [PortField<'a>],
    /// Its name.
    ident: Ident,
    /// The name of its direction parameter.
    direction: Ident,
    /// The item's generics with the direction parameter in front.
    generics: syn::Generics,
}

impl<'i, 'a> Handles<'i, 'a> {
    /// Names the handle struct and its direction parameter.
    fn new(item: &'i PortsStruct<'a>, fields: &'i [PortField<'a>]) -> Self {
        let direction = direction_param(item, fields);
        let mut generics = item.original.generics.clone();
        generics
            .params
            .insert(0, GenericParam::Type(TypeParam::from(direction.clone())));
        Handles {
            item,
            fields,
            ident: item.handles_ident(),
            direction,
            generics,
        }
    }

    /// `pub struct TextPorts<D> { .. }`, documented field by field.
    fn declaration(&self) -> TokenStream {
        let rt = runtime();
        let Handles {
            ident,
            direction,
            generics,
            ..
        } = self;
        let vis = &self.item.original.vis;
        let where_clause = &generics.where_clause;
        let doc = format!(
            "Port handles of [`{}`], for the flow builder.",
            self.item.original.ident.unraw()
        );
        let fields = self.fields.iter().map(|field| {
            let docs: Vec<_> = doc_attrs(&field.original.attrs).collect();
            let docs = if docs.is_empty() {
                let doc = format!("The `{}` port.", field.name);
                quote!(#[doc = #doc])
            } else {
                quote!(#(#docs)*)
            };
            let field_vis = &field.original.vis;
            let member = field.member;
            let ty = field.ty;
            quote! {
                #docs
                #field_vis #member: #rt::Port<#direction, #ty>,
            }
        });
        // Without fields, the direction parameter would be unused.
        let marker = self.fields.is_empty().then(|| {
            quote! {
                #[doc(hidden)]
                __direction: ::core::marker::PhantomData<fn() -> #direction>,
            }
        });
        quote! {
            #[doc = #doc]
            #vis struct #ident #generics #where_clause {
                #(#fields)*
                #marker
            }
        }
    }

    /// `Clone`, `Copy` and `Debug`, with no bound on the direction.
    fn impls(&self) -> TokenStream {
        let ident = &self.ident;
        let (impl_generics, ty_generics, where_clause) = self.generics.split_for_impl();
        let name = ident.unraw().to_string();
        let debug_fields = self.fields.iter().map(|field| {
            let member = field.member;
            let label = member.unraw().to_string();
            quote!(.field(#label, &self.#member))
        });
        quote! {
            impl #impl_generics ::core::clone::Clone for #ident #ty_generics #where_clause {
                #[inline]
                fn clone(&self) -> Self {
                    *self
                }
            }

            impl #impl_generics ::core::marker::Copy for #ident #ty_generics #where_clause {}

            impl #impl_generics ::core::fmt::Debug for #ident #ty_generics #where_clause {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.debug_struct(#name) #(#debug_fields)* .finish()
                }
            }
        }
    }

    /// The handle struct's value: one `Port::__new` per field.
    fn construct(&self, node: &Ident, builder: &Ident) -> TokenStream {
        let rt = runtime();
        let ident = &self.ident;
        let fields = self.fields.iter().enumerate().map(|(index, field)| {
            let member = field.member;
            let index = u16::try_from(index).expect("validation caps ports at u16::MAX");
            quote!(#member: #rt::Port::__new(#node, #index, #builder),)
        });
        let marker = self
            .fields
            .is_empty()
            .then(|| quote!(__direction: ::core::marker::PhantomData,));
        quote!(#ident { #(#fields)* #marker })
    }
}

/// A name for the direction parameter that is neither a parameter of the item
/// nor a name its field types use.
fn direction_param(item: &PortsStruct<'_>, fields: &[PortField<'_>]) -> Ident {
    let taken = param_names(&item.original.generics);
    ["D", "Dir", "__D", "__GhostflowDirection"]
        .into_iter()
        .map(|name| Ident::new(name, Span::call_site()))
        .find(|candidate| {
            !taken.contains(candidate)
                && !fields.iter().any(|field| mentions(field.ty, &[candidate]))
        })
        .unwrap_or_else(|| format_ident!("__GhostflowDirection{}", fields.len()))
}

/// `const _: () = assert_port_value::<T>();` for each field whose type does
/// not use the item's parameters, aimed at the field type.
///
/// Field types that use the parameters are checked where the struct is
/// instantiated, through the bounds of the `Ports` impl.
fn field_checks(item: &PortsStruct<'_>, fields: &[PortField<'_>]) -> TokenStream {
    let rt = runtime();
    let params = param_names(&item.original.generics);
    let params: Vec<&Ident> = params.iter().collect();
    fields
        .iter()
        .filter(|field| !mentions(field.ty, &params))
        .map(|field| {
            let ty = field.ty;
            quote_spanned! {ty.span()=>
                const _: () = #rt::assert_port_value::<#ty>();
            }
        })
        .collect()
}

/// `impl Ports for Text`.
fn ports_impl(
    item: &PortsStruct<'_>,
    fields: &[PortField<'_>],
    handles: &Handles<'_, '_>,
) -> TokenStream {
    let rt = runtime();
    let ident = &item.original.ident;
    let mut generics = item.original.generics.clone();
    let predicates = bounds(item, fields);
    generics.make_where_clause().predicates.extend(predicates);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let handles_ident = &handles.ident;
    let direction = &handles.direction;
    let (_, handles_ty_generics, _) = handles.generics.split_for_impl();
    let len = fields.len();
    let node = Ident::new("node", Span::call_site());
    let builder = Ident::new("builder", Span::call_site());
    let construct_handles = handles.construct(&node, &builder);

    let specs = fields.iter().map(|field| {
        let ty = field.ty;
        let name = &field.name;
        let description = match &field.description {
            Some(text) => quote!(#rt::Option::Some(#text)),
            None => quote!(#rt::Option::None),
        };
        let required = !field.optional;
        quote!(#rt::PortSpec::of::<#ty>(#name, #description, #required))
    });

    let slots = if fields.is_empty() {
        quote!(_slots)
    } else {
        quote!(slots)
    };
    let takes = fields.iter().enumerate().map(|(index, field)| {
        let member = field.member;
        let ty = field.ty;
        let name = &field.name;
        let take = if field.optional {
            quote!(take_optional)
        } else {
            quote!(take_required)
        };
        quote!(#member: #rt::#take::<#ty>(#slots, #index, #name)?,)
    });

    let out = if fields.is_empty() {
        quote!(_out)
    } else {
        quote!(out)
    };
    let pushes = fields.iter().map(|field| {
        let member = field.member;
        let ty = field.ty;
        if field.optional {
            quote!(#out.push(#rt::Option::map(self.#member, #rt::Value::new::<#ty>));)
        } else {
            quote!(#out.push(#rt::Option::Some(#rt::Value::new::<#ty>(self.#member)));)
        }
    });

    quote! {
        impl #impl_generics #rt::Ports for #ident #ty_generics #where_clause {
            type Handles<#direction: #rt::Direction> = #handles_ident #handles_ty_generics;

            const LEN: usize = #len;

            fn port_specs() -> #rt::Vec<#rt::PortSpec> {
                let mut specs = #rt::Vec::with_capacity(#len);
                #(specs.push(#specs);)*
                specs
            }

            fn handles<#direction: #rt::Direction>(
                #node: #rt::NodeIndex,
                #builder: u64,
            ) -> Self::Handles<#direction> {
                #construct_handles
            }

            fn from_values(
                #slots: &mut [#rt::Option<#rt::Value>],
            ) -> #rt::Result<Self, #rt::PortError> {
                #rt::Result::Ok(Self { #(#takes)* })
            }

            fn into_values(self, #out: &mut #rt::Vec<#rt::Option<#rt::Value>>) {
                #(#pushes)*
            }
        }
    }
}

/// The where-clause additions of the `Ports` impl.
///
/// Every type parameter is a `PortValue`; every field type is one too. For a
/// field type without parameters the bound is written `for<'__gf> T: PortValue`:
/// always true or always false, and unlike a plain bound on a concrete type it
/// is allowed on stable Rust. When it is false, the check from
/// [`field_checks`] reports it on the field, and the impl body, which relies
/// on the bound, adds no errors of its own.
fn bounds(item: &PortsStruct<'_>, fields: &[PortField<'_>]) -> Vec<WherePredicate> {
    let rt = runtime();
    let generics = &item.original.generics;
    let params = param_names(generics);
    let params: Vec<&Ident> = params.iter().collect();
    let mut predicates: Vec<WherePredicate> = generics
        .type_params()
        .map(|param| {
            let ident = &param.ident;
            parse_quote!(#ident: #rt::PortValue)
        })
        .collect();
    let mut seen = HashSet::new();
    for field in fields {
        let ty = field.ty;
        if is_type_param(ty, generics) || !seen.insert(quote!(#ty).to_string()) {
            continue;
        }
        predicates.push(if mentions(ty, &params) {
            parse_quote_spanned!(ty.span()=> #ty: #rt::PortValue)
        } else {
            parse_quote_spanned!(ty.span()=> for<'__gf> #ty: #rt::PortValue)
        });
    }
    predicates
}

/// Whether `ty` is one of the item's type parameters, bounded already.
fn is_type_param(ty: &Type, generics: &syn::Generics) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .get_ident()
            .is_some_and(|ident| generics.type_params().any(|param| param.ident == *ident)),
        _ => false,
    }
}

/// The stub emitted when the input cannot be expanded: a `Ports` impl with no
/// ports, so that code naming the type as a node's input still compiles.
pub(crate) fn stub(item: &PortsStruct<'_>) -> TokenStream {
    let rt = runtime();
    let ident = &item.original.ident;
    let mut generics = item.original.generics.clone();
    let self_ty = {
        let (_, ty_generics, _) = item.original.generics.split_for_impl();
        quote!(#ident #ty_generics)
    };
    generics
        .make_where_clause()
        .predicates
        .push(parse_quote!(for<'__gf> #self_ty: ::core::marker::Send + 'static));
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    quote! {
        const _: () = {
            impl #impl_generics #rt::Ports for #ident #ty_generics #where_clause {
                type Handles<D: #rt::Direction> = ();
                const LEN: usize = 0;
                fn port_specs() -> #rt::Vec<#rt::PortSpec> {
                    #rt::Vec::new()
                }
                fn handles<D: #rt::Direction>(_: #rt::NodeIndex, _: u64) -> Self::Handles<D> {}
                fn from_values(
                    _: &mut [#rt::Option<#rt::Value>],
                ) -> #rt::Result<Self, #rt::PortError> {
                    ::core::unreachable!("`derive(Ports)` failed for this type")
                }
                fn into_values(self, _: &mut #rt::Vec<#rt::Option<#rt::Value>>) {}
            }
        };
    }
}
