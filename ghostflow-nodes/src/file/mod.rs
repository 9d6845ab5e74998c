//! File nodes: read ([`FileRead`]), write ([`FileWrite`]) and list
//! ([`FileList`]) files under a root directory that the application
//! chooses.
//!
//! - **The root belongs to the application.** An engine's file nodes touch
//!   only what lies under its [`FileRoot`], given with
//!   `Engine::builder().resource(FileRoot::new(dir))` (optionally
//!   [`read_only`](FileRoot::read_only), which refuses every write). A flow
//!   cannot widen it. Without one, every file node fails with a message
//!   saying how to give it. (The `ghostflow` CLI gives the current
//!   directory, or `--file-root DIR`.)
//! - **Paths are relative to the root.** `reports/2024.csv`; an absolute
//!   path is accepted only when it lies under the root. Paths may be
//!   computed by expressions (`path: "out/{{ input.name }}.json"`), so the
//!   confinement is checked when the node runs, on the final path.
//! - **Nothing escapes.** Refused: `..` climbing above the root, absolute
//!   paths elsewhere, and symbolic links (the file itself or any directory
//!   on the way) that resolve outside the root. Links that stay inside are
//!   followed. The check is the use: on Unix every path is walked one
//!   component at a time from directory handles (`openat` with
//!   `O_NOFOLLOW`, links read and walked by the same rules), and files are
//!   created, renamed and removed relative to the handle of the directory
//!   that was checked. A concurrent process swapping a directory for a
//!   link between the check and the use therefore cannot redirect a read
//!   or a write outside the root. An absolute link target is compared with
//!   the root's canonical path; one written through another alias of the
//!   root (a bind mount, a second link) is refused. The listing never
//!   follows links at all. What the guarantee does not cover: other
//!   processes writing inside the root, and hard links to outside files
//!   that someone made inside it (they are ordinary files).
//! - **Writes are atomic.** `file_write` writes a temporary file
//!   (`.<name>.<pid>-<n>.ghostflow-tmp`) in the target's directory, syncs
//!   it, and renames it over the target, then syncs the directory: readers
//!   see the old file or the new one, never a mix. A write that fails or
//!   is cancelled (the execution cancelled, a timeout) leaves the old file
//!   as it was and removes the temporary file; only a crash of the process
//!   mid-write can leave one behind. `if_exists: fail` is atomic too (the
//!   rename refuses to replace). `if_exists: append` is not: it appends in
//!   place, so a failure can leave part of the data appended.
//! - **Errors say what and where.** Paths in messages are relative to the
//!   root, as the flow wrote them (the root's location is never shown). A
//!   missing file, a path outside the root, a bad input or config are
//!   permanent errors; transient I/O failures (a full disk) are retryable.
//! - **Limits.** `file_read` refuses files over `max_bytes` (default
//!   10 MiB); `file_list` returns at most `max_entries` and looks at most
//!   at `max_scanned` directory entries.
//! - **Platforms.** Unix (Linux, macOS, the BSDs). Elsewhere the nodes
//!   compile and fail with a clear message.

mod error;
mod list;
mod read;
mod write;

#[cfg(unix)]
mod confine;
#[cfg(not(unix))]
#[path = "unsupported.rs"]
mod confine;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ghostflow::Registry;
use ghostflow::prelude::*;

pub use self::error::FileError;
pub use self::list::{FileEntry, FileKind, FileList, FileListOutput, KindFilter};
pub use self::read::{FileRead, FileReadOutput, PathInput, ReadFormat};
pub use self::write::{FileWrite, FileWriteInput, FileWriteOutput, IfExists, WriteFormat};

/// Registers the file nodes.
pub(crate) fn register(registry: &mut Registry) {
    registry
        .register::<FileRead>()
        .register::<FileWrite>()
        .register::<FileList>();
}

/// The directory the file nodes of an engine may touch, given by the
/// application:
///
/// ```
/// use ghostflow::Engine;
/// use ghostflow_nodes::file::FileRoot;
///
/// let engine = Engine::builder()
///     .resource(FileRoot::new("/srv/flows/data").read_only())
///     .build();
/// ```
///
/// The directory must exist when a node runs (it is opened then, not
/// here). Everything a file node reads, writes or lists lies under it; see
/// the [module documentation](self) for what is guaranteed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRoot {
    dir: PathBuf,
    read_only: bool,
}

impl FileRoot {
    /// Files under `dir`, which the nodes may read and write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileRoot {
            dir: dir.into(),
            read_only: false,
        }
    }

    /// Refuses every write: `file_read` and `file_list` only.
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether writes are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// The engine's file root, or the error that says how to give one.
fn file_root(ctx: &Context) -> Result<Arc<FileRoot>, NodeError> {
    ctx.resource::<FileRoot>()
        .ok_or_else(|| FileError::NoRoot.into_node_error())
}

/// The path to use: the `path` input, or else the configured one.
fn choose_path(configured: Option<&String>, input: Option<String>) -> Result<String, NodeError> {
    input.or_else(|| configured.cloned()).ok_or_else(|| {
        FileError::Config {
            field: "path",
            reason: "no path: set `path` in the config or connect the `path` input".into(),
        }
        .into_node_error()
    })
}

/// Runs file work on the blocking pool. When the node's future is dropped
/// (cancellation, a timeout), the work goes on to its end: writes check
/// for that themselves, see [`FileWrite`].
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, NodeError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(FileError::into_node_error),
        Err(e) => Err(NodeError::retryable(format!("the file task failed: {e}"))),
    }
}
