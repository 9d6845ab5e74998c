//! Error collection: every problem in a derive input is reported in one go.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

/// Collects the errors found while reading and checking one derive input.
///
/// Passes push into it and keep going with a best guess, so that the user
/// sees every mistake at once instead of one per compile.
#[derive(Default)]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    /// An empty collection.
    pub(crate) fn new() -> Self {
        Errors::default()
    }

    /// Records `error`.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// Records an error aimed at `tokens`.
    pub(crate) fn at(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records the error of a fallible parse, if any.
    pub(crate) fn record<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    /// `Ok` when nothing was recorded, otherwise all errors combined into one.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.combined.map_or(Ok(()), Err)
    }
}

/// A derive that failed: the errors, and the code to emit beside them.
///
/// The fallback keeps the rest of the user's crate compiling (an `impl Run`
/// still finds its `Node` impl), so the errors above are the only ones shown.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Every error found, combined.
    pub(crate) error: syn::Error,
    /// Code emitted after the errors; may be empty.
    pub(crate) fallback: TokenStream,
}

impl Failure {
    /// The `compile_error!` invocations followed by the fallback code.
    pub(crate) fn into_compile_error(self) -> TokenStream {
        let errors = self.error.into_compile_error();
        let fallback = self.fallback;
        quote! {
            #errors
            #fallback
        }
    }
}
