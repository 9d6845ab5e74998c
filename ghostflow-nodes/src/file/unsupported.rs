//! The file nodes on systems without directory-relative system calls:
//! they compile, and refuse to run with [`FileError::Unsupported`].

use super::FileRoot;
use super::error::FileError;
use super::list::FileKind;
use super::write::IfExists;

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) path: String,
    pub(crate) created: bool,
}

/// An entry found by [`list`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawEntry {
    pub(crate) path: String,
    pub(crate) name: String,
    pub(crate) kind: FileKind,
    pub(crate) size: u64,
    pub(crate) modified_secs: i64,
}

/// What [`list`] found.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) entries: Vec<RawEntry>,
    pub(crate) truncated: bool,
}

/// How far a listing goes.
#[derive(Debug, Clone, Copy)]
#[expect(
    dead_code,
    reason = "set by the node, read only where listing is supported"
)]
pub(crate) struct ListLimits {
    pub(crate) max_depth: Option<usize>,
    pub(crate) max_entries: usize,
    pub(crate) max_scanned: u64,
}

pub(crate) fn read(_: &FileRoot, _: &str, _: u64) -> Result<(String, Vec<u8>), FileError> {
    Err(FileError::Unsupported)
}

pub(crate) fn write(
    _: &FileRoot,
    _: &str,
    _: IfExists,
    _: bool,
    _: &[u8],
    _: &mut dyn FnMut(&str) -> Result<(), FileError>,
) -> Result<Written, FileError> {
    Err(FileError::Unsupported)
}

pub(crate) fn list(
    _: &FileRoot,
    _: &str,
    _: ListLimits,
    _: &dyn Fn(&str, FileKind) -> bool,
) -> Result<Listing, FileError> {
    Err(FileError::Unsupported)
}
