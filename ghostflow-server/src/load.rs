//! Loading documents the way every command does: through the registry of
//! `ghostflow_nodes`, with the environment variables the user allowed.

use std::path::Path;
use std::sync::Arc;

use ghostflow::EnvSecrets;
use ghostflow::document::{LoadError, LoadOptions, Loaded, Loader};
use ghostflow::expr::EnvAccess;

/// Loads the document at `path`.
///
/// `allow_env` lists the variables `{{ env.NAME }}` may read (`*` for all).
/// With `check_secrets`, every secret an expression reads must be set in
/// the environment now, so that a missing one is reported before anything
/// runs.
pub(crate) fn load(
    path: &Path,
    allow_env: &[String],
    check_secrets: bool,
) -> Result<Loaded, LoadError> {
    let registry = ghostflow_nodes::registry();
    Loader::with_options(&registry, options(allow_env, check_secrets)).load_path(path)
}

/// The options documents are loaded with; also given to the engine, so
/// that sub-flows loaded while a flow runs follow the same rules.
pub(crate) fn options(allow_env: &[String], check_secrets: bool) -> LoadOptions {
    LoadOptions {
        env: env_access(allow_env),
        secrets: check_secrets.then(|| Arc::new(EnvSecrets::default()) as _),
        ..LoadOptions::default()
    }
}

fn env_access(names: &[String]) -> EnvAccess {
    if names.iter().any(|n| n == "*") {
        EnvAccess::All
    } else if names.is_empty() {
        EnvAccess::None
    } else {
        EnvAccess::Only(names.to_vec())
    }
}
