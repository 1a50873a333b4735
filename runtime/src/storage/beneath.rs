//! [`Beneath`]: files below the download folder, opened relative to the folder's descriptor and
//! never through a symbolic link.
//!
//! The folder is opened once (`O_DIRECTORY`) and its descriptor kept for the storage's life; the
//! folder itself was named by the user and may be a link, resolved then and only then. Everything
//! below it is reached from that descriptor: with one `openat2` call (`RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`) where the kernel has it, and otherwise one component at a time, each
//! folder opened with `openat(O_DIRECTORY | O_NOFOLLOW)` from its parent's descriptor and the
//! file with `openat(O_NOFOLLOW)`. Missing folders are created with `mkdirat` on the parent's
//! descriptor.
//!
//! Invariants:
//! - no symbolic link below the folder is followed, at any component, whenever it appeared: the
//!   kernel refuses it inside the open call itself, so no check can be outdated by the time the
//!   file is opened; a link met is [`StorageError::Link`] naming it;
//! - nothing is created, opened or read by its full path, so renaming a folder away and putting a
//!   link in its place cannot lead an open outside;
//! - only regular files are handed out; a folder or a special file where a file should be (or a
//!   file where a folder should be) is [`StorageError::WrongKind`] (opens use `O_NONBLOCK`, so a
//!   FIFO never blocks them);
//! - where `openat2` is missing (ENOSYS) or refused by a seccomp filter (EPERM), the
//!   per-component walk gives the same guarantee with one call per component.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::StorageError;

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Access {
    /// Read-write, creating the file and its missing folders.
    Create,
    /// Read-write; nothing is created.
    ReadWrite,
    /// Read-only; nothing is created.
    ReadOnly,
}

impl Access {
    fn flags(self) -> OFlags {
        let common = OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
        common
            | match self {
                Access::Create => OFlags::RDWR | OFlags::CREATE,
                Access::ReadWrite => OFlags::RDWR,
                Access::ReadOnly => OFlags::RDONLY,
            }
    }
}

/// Flags for a folder on the way to a file.
const FOLDER: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// What the layout needs at a path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Folder,
    File,
}

/// The download folder, held open; see the module docs.
#[derive(Debug)]
pub(super) struct Beneath {
    dir: OwnedFd,
    /// The folder's path, canonical: only for messages.
    path: PathBuf,
    /// Whether `openat2` is used (else one `openat` per component).
    openat2: bool,
}

impl Beneath {
    /// Opens the folder at `path` (following a link there: the user chose it) and finds out
    /// whether the kernel lets this process use `openat2`.
    pub(super) fn open(path: &Path) -> Result<Beneath, StorageError> {
        let dir = rustix::fs::open(path, FOLDER.difference(OFlags::NOFOLLOW), Mode::empty())
            .map_err(|e| StorageError::io("opening", path, e.into()))?;
        let openat2 = openat2_works(dir.as_fd());
        Ok(Beneath {
            dir,
            path: path.to_owned(),
            openat2,
        })
    }

    /// The folder's path (canonical).
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// This folder opened component by component with `openat`, as where `openat2` is missing.
    #[cfg(test)]
    pub(super) fn without_openat2(self) -> Beneath {
        Beneath {
            openat2: false,
            ..self
        }
    }

    /// Whether `openat2` is used.
    #[cfg(test)]
    pub(super) fn uses_openat2(&self) -> bool {
        self.openat2
    }

    /// Opens the regular file at `components` below the folder (plain names, at least one).
    pub(super) fn file(&self, components: &[String], access: Access) -> Result<File, StorageError> {
        let full = || {
            let mut path = self.path.clone();
            path.extend(components);
            path
        };
        if self.openat2 {
            let relative: PathBuf = components.iter().collect();
            // One call when everything is in place; otherwise the walk below creates what is
            // missing, or finds what is in the way and names it.
            if let Ok(fd) = self.open_at(self.dir.as_fd(), &relative, access.flags()) {
                return regular_file(fd, &full());
            }
        }
        let Some((name, folders)) = components.split_last() else {
            return Err(StorageError::Missing { path: full() });
        };
        let mut path = self.path.clone();
        let mut parent: Option<OwnedFd> = None;
        for folder in folders {
            path.push(folder);
            let at = parent.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
            let opened = match self.open_at(at, folder, FOLDER) {
                Err(Errno::NOENT) if access == Access::Create => {
                    match rustix::fs::mkdirat(at, folder.as_str(), Mode::from_raw_mode(0o777)) {
                        // Another thread may have made it meanwhile.
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(StorageError::io("creating folder", path, e.into())),
                    }
                    self.open_at(at, folder, FOLDER)
                }
                opened => opened,
            };
            match opened {
                Ok(fd) => parent = Some(fd),
                Err(e) => return Err(refusal(at, folder, path, Need::Folder, e, full)),
            }
        }
        path.push(name);
        let at = parent.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
        match self.open_at(at, name, access.flags()) {
            Ok(fd) => regular_file(fd, &path),
            Err(e) => Err(refusal(at, name, path, Need::File, e, full)),
        }
    }

    /// Opens `relative` below `dir` without following any link.
    fn open_at(
        &self,
        dir: BorrowedFd<'_>,
        relative: impl AsRef<Path>,
        flags: OFlags,
    ) -> Result<OwnedFd, Errno> {
        let relative = relative.as_ref();
        // openat2 refuses a mode without O_CREAT.
        let mode = if flags.contains(OFlags::CREATE) {
            Mode::from_raw_mode(0o666)
        } else {
            Mode::empty()
        };
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.openat2 {
            use rustix::fs::ResolveFlags;
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
            return rustix::fs::openat2(dir, relative, flags, mode, resolve);
        }
        rustix::fs::openat(dir, relative, flags | OFlags::NOFOLLOW, mode)
    }
}

/// Whether `openat2` works here: it is missing before Linux 5.6 and on other systems (ENOSYS),
/// and a seccomp filter may refuse it (EPERM). Any failure means the per-component walk, which
/// is as safe.
fn openat2_works(dir: BorrowedFd<'_>) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::ResolveFlags;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        rustix::fs::openat2(dir, ".", FOLDER, Mode::empty(), resolve).is_ok()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = dir;
        false
    }
}

/// `fd` as a [`File`] if it is a regular file.
fn regular_file(fd: OwnedFd, path: &Path) -> Result<File, StorageError> {
    let stat = rustix::fs::fstat(&fd).map_err(|e| StorageError::io("examining", path, e.into()))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Ok(File::from(fd)),
        found => Err(wrong_kind(found, path.to_owned(), Need::File)),
    }
}

/// The error for a failed open of `name` in `dir` (at `path`), after looking at what is there:
/// a link, the wrong kind of entry, nothing (`Missing` names the file, `file()`), or else the
/// OS's reason.
fn refusal(
    dir: BorrowedFd<'_>,
    name: &str,
    path: PathBuf,
    need: Need,
    errno: Errno,
    file: impl Fn() -> PathBuf,
) -> StorageError {
    let doing = match need {
        Need::Folder => "opening folder",
        Need::File => "opening",
    };
    match errno {
        Errno::NOENT => StorageError::Missing { path: file() },
        Errno::LOOP | Errno::NOTDIR | Errno::ISDIR | Errno::XDEV => {
            match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                    // What is there now is right: it changed while being opened.
                    FileType::Directory if need == Need::Folder => {
                        StorageError::io(doing, path, errno.into())
                    }
                    FileType::RegularFile if need == Need::File => {
                        StorageError::io(doing, path, errno.into())
                    }
                    found => wrong_kind(found, path, need),
                },
                Err(Errno::NOENT) => StorageError::Missing { path: file() },
                Err(_) => StorageError::io(doing, path, errno.into()),
            }
        }
        _ => StorageError::io(doing, path, errno.into()),
    }
}

/// The error for finding `found` (not `need`) at `path`: a link is refused as such.
fn wrong_kind(found: FileType, path: PathBuf, need: Need) -> StorageError {
    let found = match found {
        FileType::Symlink => return StorageError::Link { path },
        FileType::Directory => "a folder",
        FileType::RegularFile => "a file",
        _ => "a special file",
    };
    StorageError::WrongKind {
        path,
        found,
        needed: match need {
            Need::Folder => "a folder",
            Need::File => "a file",
        },
    }
}
