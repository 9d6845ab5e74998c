//! Text rules: doc comments to descriptions, type names to node names.

use syn::{Attribute, Expr, ExprLit, Lit, Meta};

/// The doc attributes (`///` comments) of an item, in order.
pub(crate) fn doc_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|attr| attr.path().is_ident("doc"))
}

/// The text of the `#[doc = "..."]` attributes written as string literals.
///
/// Docs computed by a macro (`#[doc = include_str!(..)]`) are skipped: their
/// text is not known when the derive runs.
fn doc_strings(attrs: &[Attribute]) -> impl Iterator<Item = String> {
    doc_attrs(attrs).filter_map(|attr| match &attr.meta {
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(ExprLit {
                lit: Lit::Str(text),
                ..
            }) => Some(text.value()),
            _ => None,
        },
        _ => None,
    })
}

/// The doc comment as one description: lines trimmed, lines of a paragraph
/// joined with single spaces, paragraphs separated by a blank line. Fenced
/// code blocks (```` ``` ````) are kept line by line, with the one space
/// that follows `///` removed, so that examples keep their indentation.
///
/// `None` when there is no doc comment, or only blank lines.
pub(crate) fn description(attrs: &[Attribute]) -> Option<String> {
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_code = false;
    for text in doc_strings(attrs) {
        for line in text.split('\n') {
            let trimmed = line.trim();
            if trimmed.starts_with("```") {
                if !in_code && !current.is_empty() {
                    paragraphs.push(std::mem::take(&mut current));
                }
                if in_code {
                    current.push('\n');
                }
                current.push_str(trimmed);
                if in_code {
                    paragraphs.push(std::mem::take(&mut current));
                }
                in_code = !in_code;
            } else if in_code {
                current.push('\n');
                current.push_str(line.strip_prefix(' ').unwrap_or(line).trim_end());
            } else if trimmed.is_empty() {
                if !current.is_empty() {
                    paragraphs.push(std::mem::take(&mut current));
                }
            } else {
                if !current.is_empty() {
                    current.push(' ');
                }
                current.push_str(trimmed);
            }
        }
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    (!paragraphs.is_empty()).then(|| paragraphs.join("\n\n"))
}

/// `CountWords` → `count_words`, `HTTPRequest` → `http_request`,
/// `Http2Client` → `http2_client`.
///
/// A word starts at an uppercase letter that follows a lowercase letter or a
/// digit, or that ends a run of capitals and is followed by a lowercase letter.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && next_is_lower)
            {
                out.push('_');
            }
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Whether `name` can name a node type: `[a-z0-9_]+`.
pub(crate) fn is_node_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `name` can name a port: `[A-Za-z0-9_]+`.
pub(crate) fn is_port_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `a` and `b` differ by at most one inserted, removed or replaced
/// character: how `inputs` is recognized as a slip for `input`.
pub(crate) fn is_near_miss(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    match long.len() - short.len() {
        0 => short.iter().zip(&long).filter(|(x, y)| x != y).count() <= 1,
        1 => {
            let prefix = short.iter().zip(&long).take_while(|(x, y)| x == y).count();
            short[prefix..] == long[prefix + 1..]
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_splits_words_acronyms_and_digits() {
        assert_eq!(snake_case("CountWords"), "count_words");
        assert_eq!(snake_case("HTTPRequest"), "http_request");
        assert_eq!(snake_case("ParseJSON"), "parse_json");
        assert_eq!(snake_case("Http2Client"), "http2_client");
        assert_eq!(snake_case("Add"), "add");
        assert_eq!(snake_case("V2"), "v2");
        assert_eq!(snake_case("Count_Words"), "count_words");
    }

    #[test]
    fn descriptions_join_lines_and_keep_paragraphs() {
        let item: syn::DeriveInput = syn::parse_quote! {
            ///  Counts the words
            /// in a text.
            ///
            ///
            /// Second paragraph.
            #[doc = "Still second."]
            struct X;
        };
        assert_eq!(
            description(&item.attrs).as_deref(),
            Some("Counts the words in a text.\n\nSecond paragraph. Still second.")
        );
        let bare: syn::DeriveInput = syn::parse_quote!(
            struct Y;
        );
        let example: syn::DeriveInput = syn::parse_quote! {
            /// Does a thing.
            ///
            /// ```yaml
            /// - id: a
            ///   config:
            ///
            ///     x: 1
            /// ```
            /// After.
            struct Z;
        };
        assert_eq!(
            description(&example.attrs).as_deref(),
            Some("Does a thing.\n\n```yaml\n- id: a\n  config:\n\n    x: 1\n```\n\nAfter.")
        );
        assert_eq!(description(&bare.attrs), None);
    }

    #[test]
    fn names_are_checked() {
        assert!(is_node_name("count_words2"));
        assert!(!is_node_name("Count"));
        assert!(!is_node_name("count-words"));
        assert!(!is_node_name(""));
        assert!(is_port_name("Text_2"));
        assert!(!is_port_name("a b"));
    }

    #[test]
    fn near_misses_are_one_edit_away() {
        assert!(is_near_miss("inputs", "input"));
        assert!(is_near_miss("ouput", "output"));
        assert!(is_near_miss("nane", "name"));
        assert!(!is_near_miss("kind", "name"));
        assert!(!is_near_miss("in", "input"));
    }
}
