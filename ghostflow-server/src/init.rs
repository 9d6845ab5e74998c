//! `ghostflow init`: write a starter flow.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

use crate::cli::InitArgs;
use crate::failure::{Failure, print_stdout};

/// The starter flow: an input with a default, an expression and a branch,
/// with built-in nodes only.
pub(crate) const HELLO: &str = include_str!("hello.yaml");

/// The file `init` writes in its directory.
const FILE_NAME: &str = "hello.yaml";

/// Writes `DIR/hello.yaml`, creating `DIR` when missing, and says how to
/// run it.
///
/// # Errors
/// [`Failure::Failed`] when the file exists (it is never overwritten) or
/// cannot be written.
pub(crate) fn init(args: &InitArgs) -> Result<(), Failure> {
    let path = args.dir.join(FILE_NAME);
    let fail = |what: &str, e: io::Error| {
        Failure::Failed(Some(format!("cannot {what} {}: {e}", path.display())))
    };
    std::fs::create_dir_all(&args.dir).map_err(|e| {
        Failure::Failed(Some(format!(
            "cannot create directory {}: {e}",
            args.dir.display()
        )))
    })?;
    // `create_new`: checking for the file and creating it is one step, so
    // nothing can appear in between and be overwritten.
    let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Failure::Failed(Some(format!(
                "{} already exists; not overwriting it (move it away, or pass another directory)",
                path.display()
            ))));
        }
        Err(e) => return Err(fail("create", e)),
    };
    file.write_all(HELLO.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail("write", e))?;
    let shown = shell_word(&path);
    print_stdout(&format!(
        "wrote {}\n\nrun it with:\n  ghostflow run {shown}\n  ghostflow run {shown} --input name=Ada --input loud=true",
        path.display()
    ))
}

/// `path` as one shell word: quoted when it holds anything but plain
/// characters.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_flow_loads_with_the_builtin_nodes() {
        let registry = ghostflow_nodes::registry();
        let loaded = ghostflow::document::Loader::new(&registry)
            .load_bytes(
                HELLO.as_bytes(),
                ghostflow::document::Format::Yaml,
                Some(FILE_NAME),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.flow.name(), "hello");
    }

    #[test]
    fn paths_are_quoted_for_the_shell_when_needed() {
        assert_eq!(shell_word(Path::new("./hello.yaml")), "./hello.yaml");
        assert_eq!(shell_word(Path::new("my flows/x")), "'my flows/x'");
        assert_eq!(shell_word(Path::new("it's")), r"'it'\''s'");
    }
}
