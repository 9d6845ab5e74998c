//! Paths resolved under the file root without leaving it (Unix).
//!
//! Nothing here opens a path as a whole. The root directory is opened once
//! per operation, and every path under it is walked one component at a
//! time from directory handles (`openat` with `O_NOFOLLOW`), so what was
//! checked is what is used: a directory swapped for a symbolic link between
//! two steps is seen as a link, never followed blindly.
//!
//! - `..` goes back to the handle of the directory it came from; above the
//!   root it is refused.
//! - A symbolic link is read (`readlinkat`) and its target walked by the
//!   same rules, from the link's directory; an absolute target is accepted
//!   only when it lies under the root's canonical path (and is walked from
//!   the root handle). At most [`MAX_LINKS`] links per path.
//! - Files are created, replaced and removed relative to the handle of
//!   their directory (`openat`, `renameat`, `unlinkat`), so a write lands in
//!   the directory that was checked, whatever happens to the path meanwhile.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::FileRoot;
use super::error::{FileError, MAX_DEPTH, MAX_LINKS};
use super::list::FileKind;
use super::write::IfExists;

/// Flags of every directory handle: read (for listings and `fsync`), never
/// through a symbolic link.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The error of a failed system call about `path`.
fn io(path: &str, action: &'static str, errno: Errno) -> FileError {
    FileError::Io {
        path: path.to_owned(),
        action,
        source: errno.into(),
    }
}

/// What a step of a path is.
#[derive(Debug, Clone)]
enum Step {
    Name(OsString),
    Parent,
}

/// A path under the root, as a node gave it, checked for what can be seen
/// without touching the disk.
#[derive(Debug, Clone)]
struct RootPath {
    steps: Vec<Step>,
    /// The path relative to the root, for messages and outputs.
    shown: String,
}

/// The root directory, opened.
#[derive(Debug)]
struct Root {
    fd: OwnedFd,
    /// The root's canonical path, to accept absolute paths and absolute
    /// symbolic links that lie under it.
    canonical: PathBuf,
    /// The root as the application gave it (absolute paths may use it too).
    given: PathBuf,
}

/// What a path is resolved for.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// A regular file, opened for reading.
    Read,
    /// The directory that holds the last component, and its name.
    Write { create_dirs: bool },
    /// A directory, opened.
    Dir,
}

/// What a path resolved to.
#[derive(Debug)]
enum Found {
    File(std::fs::File),
    Dir(OwnedFd),
    Entry {
        dir: OwnedFd,
        name: OsString,
        existing: Option<Stat>,
    },
}

impl Root {
    fn open(root: &FileRoot) -> Result<Root, FileError> {
        let unavailable = |e: std::io::Error| FileError::RootUnavailable {
            reason: e.to_string(),
        };
        let fd = rustix::fs::openat(
            rustix::fs::CWD,
            root.dir(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| unavailable(e.into()))?;
        let canonical = std::fs::canonicalize(root.dir()).map_err(unavailable)?;
        Ok(Root {
            fd,
            canonical,
            given: root.dir().to_path_buf(),
        })
    }

    /// `text` as a path under the root: relative, or absolute and under
    /// the root; `..` may not climb above the root.
    fn path(&self, text: &str) -> Result<RootPath, FileError> {
        let bad = |reason| FileError::BadPath {
            path: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if text.contains('\0') {
            return Err(bad("it contains a NUL character"));
        }
        let path = Path::new(text);
        let relative = if path.is_absolute() {
            path.strip_prefix(&self.canonical)
                .or_else(|_| path.strip_prefix(&self.given))
                .map_err(|_| FileError::Outside {
                    path: text.to_owned(),
                    link: None,
                })?
        } else {
            path
        };
        let mut steps = Vec::new();
        let mut depth = 0usize;
        for component in relative.components() {
            match component {
                Component::Normal(name) => {
                    depth += 1;
                    steps.push(Step::Name(name.to_owned()));
                }
                Component::ParentDir => {
                    depth = depth.checked_sub(1).ok_or_else(|| FileError::Outside {
                        path: text.to_owned(),
                        link: None,
                    })?;
                    steps.push(Step::Parent);
                }
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => {
                    return Err(FileError::Outside {
                        path: text.to_owned(),
                        link: None,
                    });
                }
            }
        }
        let shown = steps
            .iter()
            .map(|s| match s {
                Step::Name(n) => n.to_string_lossy().into_owned(),
                Step::Parent => "..".to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        Ok(RootPath {
            steps,
            shown: if shown.is_empty() { ".".into() } else { shown },
        })
    }

    /// A handle of the root directory itself.
    fn dup(&self, path: &RootPath) -> Result<OwnedFd, FileError> {
        self.fd.try_clone().map_err(|e| FileError::Io {
            path: path.shown.clone(),
            action: "opening the file root",
            source: e,
        })
    }

    /// Walks `path` from the root, one component at a time.
    fn resolve(&self, path: &RootPath, want: Want) -> Result<Found, FileError> {
        let shown = path.shown.as_str();
        let mut queue: VecDeque<Step> = path.steps.iter().cloned().collect();
        // The directories walked into below the root, innermost last.
        let mut stack: Vec<OwnedFd> = Vec::new();
        // Their names, for messages.
        let mut walked: Vec<String> = Vec::new();
        let mut links = 0usize;
        loop {
            let Some(step) = queue.pop_front() else {
                // The path names a directory (the root, or one reached by
                // `..` or a link).
                return match want {
                    Want::Dir => Ok(Found::Dir(match stack.pop() {
                        Some(fd) => fd,
                        None => self.dup(path)?,
                    })),
                    Want::Read | Want::Write { .. } => Err(FileError::IsADirectory {
                        path: shown.to_owned(),
                    }),
                };
            };
            let name = match step {
                Step::Parent => {
                    if stack.pop().is_none() {
                        return Err(FileError::Outside {
                            path: shown.to_owned(),
                            link: None,
                        });
                    }
                    walked.pop();
                    continue;
                }
                Step::Name(name) => name,
            };
            let here = || {
                let mut parts = walked.clone();
                parts.push(name.to_string_lossy().into_owned());
                parts.join("/")
            };
            let cur: BorrowedFd<'_> = stack.last().map_or(self.fd.as_fd(), |fd| fd.as_fd());
            let last = queue.is_empty();
            if !last || matches!(want, Want::Dir) {
                match rustix::fs::openat(cur, name.as_os_str(), dir_flags(), Mode::empty()) {
                    Ok(fd) => {
                        walked.push(name.to_string_lossy().into_owned());
                        stack.push(fd);
                    }
                    Err(e) if may_be_link(e) => match read_link(cur, &name)
                        .map_err(|e| io(shown, "reading a symbolic link", e))?
                    {
                        Some(target) => {
                            let link = here();
                            self.splice(
                                shown,
                                &link,
                                target,
                                &mut queue,
                                &mut stack,
                                &mut walked,
                                &mut links,
                            )?;
                        }
                        None if e == Errno::NOTDIR => {
                            return Err(FileError::NotADirectory {
                                path: shown.to_owned(),
                                dir: here(),
                            });
                        }
                        None => return Err(io(shown, "opening a directory", e)),
                    },
                    Err(Errno::NOENT) => match want {
                        Want::Write { create_dirs: true } => {
                            match rustix::fs::mkdirat(
                                cur,
                                name.as_os_str(),
                                Mode::from_bits_truncate(0o777),
                            ) {
                                Ok(()) | Err(Errno::EXIST) => {}
                                Err(e) => return Err(io(shown, "creating a directory", e)),
                            }
                            // Open what was made, by the same rules.
                            queue.push_front(Step::Name(name));
                        }
                        Want::Write { create_dirs: false } => {
                            return Err(FileError::NoDirectory {
                                path: shown.to_owned(),
                                dir: here(),
                                can_create: true,
                            });
                        }
                        Want::Read | Want::Dir if last => {
                            return Err(FileError::NotFound {
                                path: shown.to_owned(),
                            });
                        }
                        Want::Read | Want::Dir => {
                            return Err(FileError::NoDirectory {
                                path: shown.to_owned(),
                                dir: here(),
                                can_create: false,
                            });
                        }
                    },
                    Err(e) => return Err(io(shown, "opening a directory", e)),
                }
                continue;
            }
            match want {
                Want::Read => {
                    let flags = OFlags::RDONLY
                        | OFlags::NOFOLLOW
                        | OFlags::NONBLOCK
                        | OFlags::NOCTTY
                        | OFlags::CLOEXEC;
                    match rustix::fs::openat(cur, name.as_os_str(), flags, Mode::empty()) {
                        Ok(fd) => {
                            let stat =
                                rustix::fs::fstat(&fd).map_err(|e| io(shown, "reading", e))?;
                            match FileType::from_raw_mode(stat.st_mode) {
                                FileType::RegularFile => {
                                    return Ok(Found::File(std::fs::File::from(fd)));
                                }
                                FileType::Directory => {
                                    return Err(FileError::IsADirectory {
                                        path: shown.to_owned(),
                                    });
                                }
                                other => {
                                    return Err(FileError::NotAFile {
                                        path: shown.to_owned(),
                                        kind: describe(other),
                                    });
                                }
                            }
                        }
                        Err(e) if may_be_link(e) => match read_link(cur, &name)
                            .map_err(|e| io(shown, "reading a symbolic link", e))?
                        {
                            Some(target) => {
                                let link = here();
                                self.splice(
                                    shown,
                                    &link,
                                    target,
                                    &mut queue,
                                    &mut stack,
                                    &mut walked,
                                    &mut links,
                                )?;
                            }
                            None => return Err(io(shown, "opening", e)),
                        },
                        Err(Errno::NOENT) => {
                            return Err(FileError::NotFound {
                                path: shown.to_owned(),
                            });
                        }
                        Err(e) => return Err(io(shown, "opening", e)),
                    }
                }
                Want::Write { .. } => {
                    match rustix::fs::statat(cur, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                            FileType::Symlink => {
                                match read_link(cur, &name)
                                    .map_err(|e| io(shown, "reading a symbolic link", e))?
                                {
                                    Some(target) => {
                                        let link = here();
                                        self.splice(
                                            shown,
                                            &link,
                                            target,
                                            &mut queue,
                                            &mut stack,
                                            &mut walked,
                                            &mut links,
                                        )?;
                                    }
                                    // Replaced by something else meanwhile:
                                    // look again (bounded like links).
                                    None => {
                                        links += 1;
                                        if links > MAX_LINKS {
                                            return Err(FileError::TooManyLinks {
                                                path: shown.to_owned(),
                                            });
                                        }
                                        queue.push_front(Step::Name(name));
                                    }
                                }
                            }
                            FileType::Directory => {
                                return Err(FileError::IsADirectory {
                                    path: shown.to_owned(),
                                });
                            }
                            FileType::RegularFile => {
                                return Ok(Found::Entry {
                                    dir: match stack.pop() {
                                        Some(fd) => fd,
                                        None => self.dup(path)?,
                                    },
                                    name,
                                    existing: Some(stat),
                                });
                            }
                            other => {
                                return Err(FileError::NotAFile {
                                    path: shown.to_owned(),
                                    kind: describe(other),
                                });
                            }
                        },
                        Err(Errno::NOENT) => {
                            return Ok(Found::Entry {
                                dir: match stack.pop() {
                                    Some(fd) => fd,
                                    None => self.dup(path)?,
                                },
                                name,
                                existing: None,
                            });
                        }
                        Err(e) => return Err(io(shown, "looking up", e)),
                    }
                }
                Want::Dir => unreachable!("directories are opened above"),
            }
        }
    }

    /// Puts the components of the link `link`'s `target` in front of what
    /// is left to walk. An absolute target starts again from the root, if
    /// it lies under it.
    #[expect(
        clippy::too_many_arguments,
        reason = "the walk's state, kept in `resolve`'s locals"
    )]
    fn splice(
        &self,
        shown: &str,
        link: &str,
        target: OsString,
        queue: &mut VecDeque<Step>,
        stack: &mut Vec<OwnedFd>,
        walked: &mut Vec<String>,
        links: &mut usize,
    ) -> Result<(), FileError> {
        *links += 1;
        if *links > MAX_LINKS {
            return Err(FileError::TooManyLinks {
                path: shown.to_owned(),
            });
        }
        let outside = || FileError::Outside {
            path: shown.to_owned(),
            link: Some(link.to_owned()),
        };
        let target = PathBuf::from(target);
        let relative = if target.is_absolute() {
            let rest = target
                .strip_prefix(&self.canonical)
                .map_err(|_| outside())?;
            stack.clear();
            walked.clear();
            rest
        } else {
            target.as_path()
        };
        let mut steps = Vec::new();
        for component in relative.components() {
            match component {
                Component::Normal(name) => steps.push(Step::Name(name.to_owned())),
                Component::ParentDir => steps.push(Step::Parent),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => return Err(outside()),
            }
        }
        for step in steps.into_iter().rev() {
            queue.push_front(step);
        }
        // A `..` that climbs out through the link is reported as the link's.
        let mut depth = stack.len();
        for step in queue.iter() {
            match step {
                Step::Name(_) => depth += 1,
                Step::Parent if depth == 0 => return Err(outside()),
                Step::Parent => depth -= 1,
            }
        }
        Ok(())
    }
}

/// Whether `openat` with `O_NOFOLLOW` failed because the name is a link
/// (Linux and macOS say `ELOOP`, FreeBSD `EMLINK`, and with `O_DIRECTORY`
/// some say `ENOTDIR`).
fn may_be_link(e: Errno) -> bool {
    e == Errno::LOOP || e == Errno::MLINK || e == Errno::NOTDIR
}

/// The target of the symbolic link `name` in `dir`; `None` when it is not
/// a link.
fn read_link(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<OsString>, Errno> {
    match rustix::fs::readlinkat(dir, name, Vec::new()) {
        Ok(target) => Ok(Some(OsString::from_vec(target.into_bytes()))),
        Err(Errno::INVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "a file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "not a regular file",
    }
}

// ----------------------------------------------------------------- reading

/// Reads the regular file at `path` under the root, up to `max_bytes`;
/// returns the path as shown and the bytes.
pub(crate) fn read(
    root: &FileRoot,
    path: &str,
    max_bytes: u64,
) -> Result<(String, Vec<u8>), FileError> {
    let opened = Root::open(root)?;
    let path = opened.path(path)?;
    let Found::File(file) = opened.resolve(&path, Want::Read)? else {
        unreachable!("a read resolves to a file")
    };
    let shown = path.shown;
    let too_large = || FileError::TooLarge {
        path: shown.clone(),
        limit: max_bytes,
    };
    let size = file
        .metadata()
        .map_err(|e| FileError::Io {
            path: shown.clone(),
            action: "reading",
            source: e,
        })?
        .len();
    if size > max_bytes {
        return Err(too_large());
    }
    // The file may grow while it is read: read one byte past the limit.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| FileError::Io {
            path: shown.clone(),
            action: "reading",
            source: e,
        })?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok((shown, bytes))
}

// ----------------------------------------------------------------- writing

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    /// The path as shown.
    pub(crate) path: String,
    /// Whether the file did not exist before.
    pub(crate) created: bool,
}

/// How much is written between two checks for cancellation.
const CHUNK: usize = 1 << 20;

/// Writes `bytes` to `path` under the root as `if_exists` says. Overwrite
/// and fail write a temporary file in the same directory, sync it, and
/// rename it over the target (with "no replace" for fail), so the target
/// is either untouched or completely new. `check` is called before each
/// chunk and before the rename; an error from it abandons the write (the
/// temporary file is removed).
pub(crate) fn write(
    root: &FileRoot,
    path: &str,
    if_exists: IfExists,
    create_dirs: bool,
    bytes: &[u8],
    check: &mut dyn FnMut(&str) -> Result<(), FileError>,
) -> Result<Written, FileError> {
    let opened = Root::open(root)?;
    let path = opened.path(path)?;
    if root.is_read_only() {
        return Err(FileError::ReadOnly { path: path.shown });
    }
    let Found::Entry {
        dir,
        name,
        existing,
    } = opened.resolve(&path, Want::Write { create_dirs })?
    else {
        unreachable!("a write resolves to an entry")
    };
    let shown = path.shown;
    let fail = |action, e: Errno| io(&shown, action, e);
    match if_exists {
        IfExists::Fail if existing.is_some() => Err(FileError::Exists { path: shown }),
        IfExists::Append => {
            check(&shown)?;
            let flags = OFlags::WRONLY
                | OFlags::APPEND
                | OFlags::CREATE
                | OFlags::NOFOLLOW
                | OFlags::NOCTTY
                | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(
                &dir,
                name.as_os_str(),
                flags,
                Mode::from_bits_truncate(0o666),
            )
            .map_err(|e| match e {
                // A link put in its place since it was looked up.
                Errno::LOOP | Errno::MLINK => FileError::Io {
                    path: shown.clone(),
                    action: "opening (it changed while being opened)",
                    source: std::io::Error::from(e),
                },
                e => fail("opening", e),
            })?;
            let stat = rustix::fs::fstat(&fd).map_err(|e| fail("opening", e))?;
            let kind = FileType::from_raw_mode(stat.st_mode);
            if kind != FileType::RegularFile {
                return Err(FileError::NotAFile {
                    path: shown,
                    kind: describe(kind),
                });
            }
            let mut file = std::fs::File::from(fd);
            let io_err = |action, e| FileError::Io {
                path: shown.clone(),
                action,
                source: e,
            };
            file.write_all(bytes).map_err(|e| io_err("appending", e))?;
            file.sync_all().map_err(|e| io_err("syncing", e))?;
            Ok(Written {
                created: existing.is_none(),
                path: shown,
            })
        }
        IfExists::Overwrite | IfExists::Fail => {
            let (temp_name, fd) =
                create_temp(&dir, &name).map_err(|e| fail("creating a temporary file", e))?;
            let temp = TempFile {
                dir: &dir,
                name: temp_name,
                armed: true,
            };
            if let Some(stat) = &existing {
                // The new file keeps the old one's permissions (best effort:
                // a file we may not chmod still gets its content).
                let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(stat.st_mode & 0o777));
            }
            let mut file = std::fs::File::from(fd);
            let io_err = |action, e| FileError::Io {
                path: shown.clone(),
                action,
                source: e,
            };
            for chunk in bytes.chunks(CHUNK) {
                check(&shown)?;
                file.write_all(chunk).map_err(|e| io_err("writing", e))?;
            }
            file.sync_all().map_err(|e| io_err("syncing", e))?;
            drop(file);
            check(&shown)?;
            let renamed = if if_exists == IfExists::Fail {
                rename_no_replace(&dir, &temp.name, &name)
            } else {
                rustix::fs::renameat(&dir, temp.name.as_os_str(), &dir, name.as_os_str())
            };
            match renamed {
                Ok(()) => {}
                Err(Errno::EXIST) => return Err(FileError::Exists { path: shown }),
                Err(Errno::ISDIR) => return Err(FileError::IsADirectory { path: shown }),
                Err(e) => return Err(fail("replacing the file", e)),
            }
            temp.disarm();
            // Make the rename itself durable (not every file system can).
            let _ = rustix::fs::fsync(&dir);
            Ok(Written {
                created: existing.is_none(),
                path: shown,
            })
        }
    }
}

/// A temporary file, removed when dropped unless disarmed.
struct TempFile<'a> {
    dir: &'a OwnedFd,
    name: OsString,
    armed: bool,
}

impl TempFile<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = rustix::fs::unlinkat(self.dir, self.name.as_os_str(), AtFlags::empty());
        }
    }
}

/// The suffix of temporary files, `.<name>.<pid>-<n>.ghostflow-tmp`.
const TEMP_SUFFIX: &str = ".ghostflow-tmp";

/// Creates a new temporary file beside `name` in `dir`.
fn create_temp(dir: &OwnedFd, name: &OsStr) -> Result<(OsString, OwnedFd), Errno> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Leave room in the 255 bytes a name may have.
    let base = &name.as_bytes()[..name.len().min(128)];
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut last = Errno::EXIST;
    for _ in 0..64 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut temp = Vec::with_capacity(base.len() + 48);
        temp.push(b'.');
        temp.extend_from_slice(base);
        temp.extend_from_slice(format!(".{}-{n}{TEMP_SUFFIX}", std::process::id()).as_bytes());
        let temp = OsString::from_vec(temp);
        match rustix::fs::openat(
            dir,
            temp.as_os_str(),
            flags,
            Mode::from_bits_truncate(0o666),
        ) {
            Ok(fd) => return Ok((temp, fd)),
            Err(Errno::EXIST) => last = Errno::EXIST,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Renames `from` to `to` in `dir` unless `to` exists (`EEXIST` then).
fn rename_no_replace(dir: &OwnedFd, from: &OsStr, to: &OsStr) -> Result<(), Errno> {
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    match rustix::fs::renameat_with(dir, from, dir, to, rustix::fs::RenameFlags::NOREPLACE) {
        // The file system cannot: fall back to a hard link.
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {}
        done => return done,
    }
    // A hard link fails if `to` exists; then the temporary name goes.
    rustix::fs::linkat(dir, from, dir, to, AtFlags::empty())?;
    let _ = rustix::fs::unlinkat(dir, from, AtFlags::empty());
    Ok(())
}

// ----------------------------------------------------------------- listing

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
pub(crate) struct ListLimits {
    /// The deepest level to look at (1: the base's own entries); `None`
    /// for no limit but [`MAX_DEPTH`].
    pub(crate) max_depth: Option<usize>,
    pub(crate) max_entries: usize,
    pub(crate) max_scanned: u64,
}

/// One directory being listed.
struct Frame {
    fd: OwnedFd,
    prefix: String,
    names: std::vec::IntoIter<OsString>,
    depth: usize,
}

/// Lists the entries under `base` (a directory under the root; missing is
/// empty) whose path relative to the root `matches`, depth first, each
/// directory's entries sorted by name, so that the result is sorted by
/// path component by component. Symbolic links are listed, never
/// followed. Names that are not UTF-8 are left out.
pub(crate) fn list(
    root: &FileRoot,
    base: &str,
    limits: ListLimits,
    matches: &dyn Fn(&str, FileKind) -> bool,
) -> Result<Listing, FileError> {
    let opened = Root::open(root)?;
    let (fd, prefix) = if base.is_empty() {
        let path = opened.path(".")?;
        (opened.dup(&path)?, String::new())
    } else {
        let path = opened.path(base)?;
        match opened.resolve(&path, Want::Dir) {
            Ok(Found::Dir(fd)) => (fd, path.shown),
            Ok(_) => unreachable!("a directory resolves to a directory"),
            Err(
                FileError::NotFound { .. }
                | FileError::NoDirectory { .. }
                | FileError::NotADirectory { .. },
            ) => return Ok(Listing::default()),
            Err(e) => return Err(e),
        }
    };
    let mut scanned = 0u64;
    let names = read_names(&fd, &prefix, &mut scanned, limits.max_scanned)?;
    let mut stack = vec![Frame {
        fd,
        prefix,
        names: names.into_iter(),
        depth: 1,
    }];
    let mut listing = Listing::default();
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.next() else {
            stack.pop();
            continue;
        };
        let Some(text) = name.to_str() else {
            continue;
        };
        let path = if frame.prefix.is_empty() {
            text.to_owned()
        } else {
            format!("{}/{text}", frame.prefix)
        };
        let stat = match rustix::fs::statat(&frame.fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
        {
            Ok(stat) => stat,
            // Removed since the directory was read.
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(io(&path, "looking up", e)),
        };
        let kind = match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => FileKind::File,
            FileType::Directory => FileKind::Dir,
            FileType::Symlink => FileKind::Symlink,
            _ => FileKind::Other,
        };
        if matches(&path, kind) {
            if listing.entries.len() == limits.max_entries {
                listing.truncated = true;
                break;
            }
            listing.entries.push(RawEntry {
                path: path.clone(),
                name: text.to_owned(),
                kind,
                size: u64::try_from(stat.st_size).unwrap_or(0),
                modified_secs: to_i64(stat.st_mtime),
            });
        }
        let deeper = limits.max_depth.is_none_or(|max| frame.depth < max);
        if kind != FileKind::Dir || !deeper {
            continue;
        }
        if frame.depth >= MAX_DEPTH {
            return Err(FileError::TooDeep { path });
        }
        let child =
            match rustix::fs::openat(&frame.fd, name.as_os_str(), dir_flags(), Mode::empty()) {
                Ok(fd) => fd,
                // Replaced or removed since it was looked up: not followed.
                Err(Errno::LOOP | Errno::MLINK | Errno::NOTDIR | Errno::NOENT) => continue,
                Err(e) => return Err(io(&path, "opening a directory", e)),
            };
        let depth = frame.depth + 1;
        let names = read_names(&child, &path, &mut scanned, limits.max_scanned)?;
        stack.push(Frame {
            fd: child,
            prefix: path,
            names: names.into_iter(),
            depth,
        });
    }
    Ok(listing)
}

/// A `stat` time as `i64`, whatever the platform's integer type is.
fn to_i64<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(0)
}

/// The names in directory `fd`, sorted, counted against `max_scanned`.
fn read_names(
    fd: &OwnedFd,
    path: &str,
    scanned: &mut u64,
    max_scanned: u64,
) -> Result<Vec<OsString>, FileError> {
    let shown = if path.is_empty() { "." } else { path };
    let dir = rustix::fs::Dir::read_from(fd).map_err(|e| io(shown, "listing", e))?;
    let mut names = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| io(shown, "listing", e))?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        *scanned += 1;
        if *scanned > max_scanned {
            return Err(FileError::TooManyScanned { limit: max_scanned });
        }
        names.push(OsString::from_vec(name.to_vec()));
    }
    names.sort();
    Ok(names)
}
