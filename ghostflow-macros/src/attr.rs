//! Attribute parsing: `#[node(...)]` on a node's config type, `#[ports(...)]`
//! on a ports struct and `#[port(...)]` on its fields.
//!
//! Parsing never stops at the first mistake: unknown keys, duplicates and
//! values of the wrong kind are recorded in [`Errors`] and the rest of the
//! attribute is still read.

use proc_macro2::{TokenStream, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::Parse;
use syn::{Attribute, Expr, ExprLit, Ident, Lit, LitStr, Path, Token, Type};

use crate::errors::Errors;
use crate::text::is_near_miss;

/// The settings of `#[node(...)]`. `None` means "not given" (or given wrongly).
#[derive(Default)]
pub(crate) struct NodeAttrs {
    /// `input = Type`: the ports struct of the inputs.
    pub(crate) input: Option<Type>,
    /// `output = Type`: the ports struct of the outputs.
    pub(crate) output: Option<Type>,
    /// `name = "..."`: the node's type name.
    pub(crate) name: Option<LitStr>,
    /// `version = "..."`: the node's version.
    pub(crate) version: Option<LitStr>,
    /// `category = "..."`: the node's catalog category.
    pub(crate) category: Option<LitStr>,
}

/// The keys `#[node(...)]` accepts, in the order error messages list them.
const NODE_KEYS: &[&str] = &["input", "output", "name", "version", "category"];

impl NodeAttrs {
    /// Reads every `#[node(...)]` attribute in `attrs`.
    ///
    /// A key that is one typo away from a known key (`inputs`) is reported as
    /// unknown, and its value is still used if that key is not given, so that
    /// the generated fallback matches what the user meant.
    pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = NodeAttrs::default();
        let mut guessed = NodeAttrs::default();
        let mut seen = Vec::new();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident("node")) {
            let result = attr.parse_nested_meta(|meta| {
                let key = key_of(&meta.path);
                if NODE_KEYS.contains(&key.as_str())
                    && check_duplicate(&mut seen, &meta.path, &key, errors)
                {
                    return skip_value(&meta).map(drop);
                }
                match key.as_str() {
                    "input" => out.input = type_value(&meta, errors)?,
                    "output" => out.output = type_value(&meta, errors)?,
                    "name" => out.name = str_value(&meta, "name = \"count_words\"", errors)?,
                    "version" => out.version = str_value(&meta, "version = \"2\"", errors)?,
                    "category" => out.category = str_value(&meta, "category = \"text\"", errors)?,
                    _ => {
                        errors.at(
                            &meta.path,
                            format_args!(
                                "unknown attribute `{key}`; expected one of {}",
                                NODE_KEYS.join(", ")
                            ),
                        );
                        let value = skip_value(&meta)?;
                        match NODE_KEYS.iter().find(|known| is_near_miss(&key, known)) {
                            Some(&"input") => guessed.input = syn::parse2(value).ok(),
                            Some(&"output") => guessed.output = syn::parse2(value).ok(),
                            Some(&"name") => guessed.name = syn::parse2(value).ok(),
                            Some(&"version") => guessed.version = syn::parse2(value).ok(),
                            Some(&"category") => guessed.category = syn::parse2(value).ok(),
                            _ => {}
                        }
                    }
                }
                Ok(())
            });
            errors.record(result);
        }
        out.input = out.input.or(guessed.input);
        out.output = out.output.or(guessed.output);
        out.name = out.name.or(guessed.name);
        out.version = out.version.or(guessed.version);
        out.category = out.category.or(guessed.category);
        out
    }
}

/// The settings of `#[ports(...)]` on a ports struct.
#[derive(Default)]
pub(crate) struct PortsAttrs {
    /// `handles = Ident`: the name of the generated handle struct.
    pub(crate) handles: Option<Ident>,
}

impl PortsAttrs {
    /// Reads every `#[ports(...)]` attribute in `attrs`.
    pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = PortsAttrs::default();
        let mut seen = Vec::new();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident("ports")) {
            let result = attr.parse_nested_meta(|meta| {
                let key = key_of(&meta.path);
                if key == "handles" {
                    if !check_duplicate(&mut seen, &meta.path, &key, errors) {
                        out.handles = ident_value(&meta, "handles = TextHandles", errors)?;
                    }
                } else {
                    errors.at(
                        &meta.path,
                        format_args!("unknown attribute `{key}`; expected handles"),
                    );
                }
                skip_value(&meta).map(drop)
            });
            errors.record(result);
        }
        out
    }
}

/// The settings of `#[port(...)]` on one field of a ports struct.
#[derive(Default)]
pub(crate) struct PortAttrs {
    /// `name = "..."`: the port's name, instead of the field's.
    pub(crate) name: Option<LitStr>,
}

impl PortAttrs {
    /// Reads every `#[port(...)]` attribute in `attrs`.
    pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = PortAttrs::default();
        let mut seen = Vec::new();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident("port")) {
            let result = attr.parse_nested_meta(|meta| {
                let key = key_of(&meta.path);
                if key == "name" {
                    if !check_duplicate(&mut seen, &meta.path, &key, errors) {
                        out.name = str_value(&meta, "name = \"text\"", errors)?;
                    }
                } else {
                    errors.at(
                        &meta.path,
                        format_args!("unknown attribute `{key}`; expected name"),
                    );
                }
                skip_value(&meta).map(drop)
            });
            errors.record(result);
        }
        out
    }
}

/// A key as written, `a::b` for a path.
fn key_of(path: &Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    segments.join("::")
}

/// Records `key` as seen; reports it and returns `true` if it was already.
fn check_duplicate(seen: &mut Vec<String>, path: &Path, key: &str, errors: &mut Errors) -> bool {
    if seen.iter().any(|k| k == key) {
        errors.at(path, format_args!("duplicate attribute `{key}`"));
        true
    } else {
        seen.push(key.to_owned());
        false
    }
}

/// Reads `= Type`. A string such as `"Text"` is reported, and read as the type
/// it spells so that the rest of the expansion can go on.
fn type_value(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<Type>> {
    let value = meta.value()?;
    if value.peek(LitStr) {
        let lit: LitStr = value.parse()?;
        errors.at(
            &lit,
            format_args!(
                "expected a type, not a string: write `{} = {}`",
                key_of(&meta.path),
                lit.value()
            ),
        );
        return Ok(lit.parse().ok());
    }
    value.parse().map(Some)
}

/// Reads `= "string"`; any other expression is reported.
fn str_value(
    meta: &ParseNestedMeta<'_>,
    example: &str,
    errors: &mut Errors,
) -> syn::Result<Option<LitStr>> {
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(Some(lit)),
        other => {
            errors.at(
                other,
                format_args!("expected a string literal, as in `{example}`"),
            );
            Ok(None)
        }
    }
}

/// Reads `= Ident`. A string is reported, and read as the identifier it spells.
fn ident_value(
    meta: &ParseNestedMeta<'_>,
    example: &str,
    errors: &mut Errors,
) -> syn::Result<Option<Ident>> {
    let value = meta.value()?;
    if value.peek(LitStr) {
        let lit: LitStr = value.parse()?;
        errors.at(
            &lit,
            format_args!("expected an identifier, not a string, as in `{example}`"),
        );
        return Ok(lit.parse_with(Ident::parse).ok());
    }
    value.parse().map(Some)
}

/// Consumes whatever follows a key (`= value` up to the next top-level comma,
/// or a parenthesized list) and returns it.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<TokenStream> {
    if meta.input.peek(Token![=]) {
        meta.value()?.step(|cursor| {
            let mut rest = *cursor;
            let mut angle_depth = 0usize;
            let mut tokens = TokenStream::new();
            while let Some((tree, next)) = rest.token_tree() {
                if let TokenTree::Punct(punct) = &tree {
                    match punct.as_char() {
                        ',' if angle_depth == 0 => break,
                        '<' => angle_depth += 1,
                        '>' => angle_depth = angle_depth.saturating_sub(1),
                        _ => {}
                    }
                }
                tokens.extend([tree]);
                rest = next;
            }
            Ok((tokens, rest))
        })
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse()
    } else {
        Ok(TokenStream::new())
    }
}
