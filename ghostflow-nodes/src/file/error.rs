//! What can go wrong in the file nodes, and whether retrying can help.

use ghostflow::NodeError;

/// The most symbolic links followed while resolving one path.
pub(crate) const MAX_LINKS: usize = 40;

/// The deepest a listing descends below its starting directory.
pub(crate) const MAX_DEPTH: usize = 64;

/// A failure of a file node. Paths in messages are relative to the file
/// root, as the flow wrote them; the root's own location is never shown.
/// [`FileError::into_node_error`] makes it the [`NodeError`] the engine
/// sees: permanent for what retrying cannot fix (a missing file, a path
/// outside the root, a bad input), retryable for transient I/O failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The engine has no [`FileRoot`](super::FileRoot).
    #[error(
        "no file root: the file nodes only touch files under a directory the application chooses; give one with `Engine::builder().resource(ghostflow_nodes::file::FileRoot::new(dir))` (the `ghostflow` CLI gives the current directory, or `--file-root DIR`)"
    )]
    NoRoot,
    /// The root directory cannot be opened.
    #[error("the file root cannot be opened: {reason}")]
    RootUnavailable {
        /// Why, as the system says.
        reason: String,
    },
    /// A write under a read-only root.
    #[error("the file root is read-only: `{path}` cannot be written")]
    ReadOnly {
        /// The path.
        path: String,
    },
    /// A path that cannot name a file (empty, with a NUL byte).
    #[error("`{path}` is not a usable path: {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A path that leads outside the root: `..` climbing out, an absolute
    /// path elsewhere, a symbolic link pointing out.
    #[error("`{path}` leads outside the file root{}", through(link.as_deref()))]
    Outside {
        /// The path.
        path: String,
        /// The symbolic link that points out, when one does.
        link: Option<String>,
    },
    /// The file does not exist.
    #[error("`{path}` does not exist")]
    NotFound {
        /// The path.
        path: String,
    },
    /// A directory on the way does not exist.
    #[error("`{path}`: the directory `{dir}` does not exist{}", if *can_create { " (set `create_dirs: true` to create it)" } else { "" })]
    NoDirectory {
        /// The path.
        path: String,
        /// The missing directory.
        dir: String,
        /// Whether the node has a `create_dirs` option.
        can_create: bool,
    },
    /// Something on the way is not a directory.
    #[error("`{path}`: `{dir}` is not a directory")]
    NotADirectory {
        /// The path.
        path: String,
        /// The part that is not a directory.
        dir: String,
    },
    /// The path names a directory where a file is wanted.
    #[error("`{path}` is a directory")]
    IsADirectory {
        /// The path.
        path: String,
    },
    /// The path names a FIFO, a socket, a device.
    #[error("`{path}` is not a regular file (it is {kind})")]
    NotAFile {
        /// The path.
        path: String,
        /// What it is instead, such as `a FIFO`.
        kind: &'static str,
    },
    /// The file exists and `if_exists: fail` says not to touch it.
    #[error("`{path}` already exists (if_exists: fail)")]
    Exists {
        /// The path.
        path: String,
    },
    /// The file is larger than the node reads.
    #[error("`{path}` is larger than {limit} bytes (config.max_bytes)")]
    TooLarge {
        /// The path.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// The file's content is not what the node was told to expect.
    #[error("`{path}`: {reason}")]
    Decode {
        /// The path.
        path: String,
        /// What is wrong, such as `not UTF-8 text ...`.
        reason: String,
    },
    /// Symbolic links that lead to each other, or too many of them.
    #[error("`{path}`: more than {MAX_LINKS} symbolic links to follow (a loop?)")]
    TooManyLinks {
        /// The path.
        path: String,
    },
    /// An input value the node cannot use.
    #[error("input `{port}`: {reason}")]
    Input {
        /// The input port.
        port: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A configuration value that is wrong at run time.
    #[error("config.{field}: {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A listing that looked at more entries than allowed.
    #[error(
        "the listing looked at more than {limit} entries (config.max_scanned); narrow the pattern"
    )]
    TooManyScanned {
        /// The limit.
        limit: u64,
    },
    /// A listing deeper than 64 directories below where it starts.
    #[error("the listing goes deeper than {MAX_DEPTH} directories, at `{path}`")]
    TooDeep {
        /// Where.
        path: String,
    },
    /// The write was cancelled before the file was replaced.
    #[error("the write of `{path}` was cancelled; the file is unchanged")]
    Cancelled {
        /// The path.
        path: String,
    },
    /// A system call failed.
    #[error("`{path}`: {action}: {source}")]
    Io {
        /// The path.
        path: String,
        /// What was being done, such as `reading`.
        action: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// This platform has no directory-relative system calls.
    #[error(
        "the file nodes need a Unix system (Linux, macOS, BSD): confinement to the file root relies on directory-relative system calls"
    )]
    Unsupported,
}

fn through(link: Option<&str>) -> String {
    match link {
        Some(link) => format!(" (through the symbolic link `{link}`)"),
        None => String::new(),
    }
}

impl FileError {
    /// Whether another attempt may succeed: only I/O failures that are not
    /// about the path itself (a full disk, an interrupted device).
    pub fn is_retryable(&self) -> bool {
        match self {
            FileError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::AlreadyExists
                    | std::io::ErrorKind::InvalidInput
                    | std::io::ErrorKind::InvalidFilename
                    | std::io::ErrorKind::IsADirectory
                    | std::io::ErrorKind::NotADirectory
                    | std::io::ErrorKind::ReadOnlyFilesystem
                    | std::io::ErrorKind::Unsupported
            ),
            FileError::Cancelled { .. } => true,
            _ => false,
        }
    }

    /// The error the engine sees.
    pub fn into_node_error(self) -> NodeError {
        let message = self.to_string();
        let error = if self.is_retryable() {
            NodeError::retryable(message)
        } else {
            NodeError::permanent(message)
        };
        error.with_source(self)
    }
}
