//! Who could have changed a file: ownership and write-permission checks along a path.
//!
//! A program, a script, the policy or a data path the gateway hands to root is only as safe as
//! every directory above it. This module walks a path component by component with `lstat`, so a
//! symbolic link is seen as a link, never silently followed. It imports nothing from the crate.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

const MAX_LINKS: usize = 40;
const GROUP_OR_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// Why a path is not trusted.
#[derive(Debug)]
pub enum Distrust {
    Relative(PathBuf),
    Missing(PathBuf),
    Io(PathBuf, io::Error),
    NotRootOwned {
        path: PathBuf,
        uid: u32,
    },
    Writable {
        path: PathBuf,
        mode: u32,
    },
    Symlink(PathBuf),
    NotADirectory(PathBuf),
    WrongKind {
        path: PathBuf,
        expected: &'static str,
    },
    TooManyLinks(PathBuf),
}

impl fmt::Display for Distrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distrust::Relative(p) => write!(f, "{} is not an absolute path", p.display()),
            Distrust::Missing(p) => write!(f, "{} does not exist", p.display()),
            Distrust::Io(p, e) => write!(f, "{} cannot be inspected: {e}", p.display()),
            Distrust::NotRootOwned { path, uid } => {
                write!(f, "{} is owned by uid {uid}, not by root", path.display())
            }
            Distrust::Writable { path, mode } => write!(
                f,
                "{} is writable by {} (mode {:04o})",
                path.display(),
                if mode & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                },
                mode & 0o7777
            ),
            Distrust::Symlink(p) => write!(f, "{} is a symbolic link", p.display()),
            Distrust::NotADirectory(p) => write!(f, "{} is not a directory", p.display()),
            Distrust::WrongKind { path, expected } => {
                write!(f, "{} is not {expected}", path.display())
            }
            Distrust::TooManyLinks(p) => {
                write!(f, "{} has too many levels of symbolic links", p.display())
            }
        }
    }
}

fn lstat(path: &Path) -> Result<Option<Metadata>, Distrust> {
    match fs::symlink_metadata(path) {
        Ok(md) => Ok(Some(md)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Distrust::Io(path.to_path_buf(), e)),
    }
}

fn root_owned(path: &Path, md: &Metadata) -> Result<(), Distrust> {
    if md.uid() != 0 {
        return Err(Distrust::NotRootOwned {
            path: path.to_path_buf(),
            uid: md.uid(),
        });
    }
    Ok(())
}

/// Root-owned and writable by nobody else. With `allow_sticky`, a directory that others may
/// write is accepted when its sticky bit keeps them from renaming root's entries (`/nix/store`).
fn locked(path: &Path, md: &Metadata, allow_sticky: bool) -> Result<(), Distrust> {
    root_owned(path, md)?;
    let mode = md.mode();
    let sticky_dir = allow_sticky && md.is_dir() && mode & STICKY != 0;
    if mode & GROUP_OR_OTHER_WRITE != 0 && !sticky_dir {
        return Err(Distrust::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn components(path: &Path) -> Result<VecDeque<OsString>, Distrust> {
    if !path.is_absolute() {
        return Err(Distrust::Relative(path.to_path_buf()));
    }
    Ok(path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect())
}

/// Resolves an executable or configuration file the way the kernel would, following links, and
/// checks that root alone could have changed any directory, link or file on the way.
/// Returns the resolved path.
pub fn resolve_locked(path: &Path) -> Result<PathBuf, Distrust> {
    resolve_locked_metadata(path).map(|(resolved, _)| resolved)
}

/// [`resolve_locked`], also giving what the walk saw of the file itself (what `stat` of the
/// path would give: the walk follows every link), so a caller need not ask again.
pub fn resolve_locked_metadata(path: &Path) -> Result<(PathBuf, Metadata), Distrust> {
    let mut pending = components(path)?;
    let mut current = PathBuf::from("/");
    let root_md = lstat(&current)?.ok_or_else(|| Distrust::Missing(current.clone()))?;
    locked(&current, &root_md, false)?;
    // What the walk last saw of `current`; a `..` steps back to a directory seen earlier.
    let mut last = Some(root_md);
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            current.pop();
            last = None;
            continue;
        }
        let next = current.join(&name);
        let md = lstat(&next)?.ok_or_else(|| Distrust::Missing(next.clone()))?;
        if md.file_type().is_symlink() {
            root_owned(&next, &md)?;
            links += 1;
            if links > MAX_LINKS {
                return Err(Distrust::TooManyLinks(path.to_path_buf()));
            }
            let target = fs::read_link(&next).map_err(|e| Distrust::Io(next.clone(), e))?;
            if target.is_absolute() {
                current = PathBuf::from("/");
            }
            let mut rest = components(&Path::new("/").join(&target))?;
            rest.extend(pending);
            pending = rest;
            continue;
        }
        locked(&next, &md, true)?;
        if !pending.is_empty() && !md.is_dir() {
            return Err(Distrust::NotADirectory(next));
        }
        current = next;
        last = Some(md);
    }
    let md = match last {
        Some(md) => md,
        None => lstat(&current)?.ok_or_else(|| Distrust::Missing(current.clone()))?,
    };
    Ok((current, md))
}

/// Checks an executable: the path chain and, for a `#!` script, its interpreter's chain too.
pub fn resolve_program(path: &Path) -> Result<PathBuf, Distrust> {
    let (resolved, md) = resolve_locked_metadata(path)?;
    if !md.is_file() {
        return Err(Distrust::WrongKind {
            path: resolved,
            expected: "a regular file",
        });
    }
    if let Some(interpreter) = shebang(&resolved)? {
        resolve_locked(&interpreter)?;
    }
    Ok(resolved)
}

fn shebang(path: &Path) -> Result<Option<PathBuf>, Distrust> {
    let mut head = [0u8; 256];
    let n = fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| Distrust::Io(path.to_path_buf(), e))?;
    let head = &head[..n];
    let Some(rest) = head.strip_prefix(b"#!") else {
        return Ok(None);
    };
    let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    Ok(line.split_whitespace().next().map(PathBuf::from))
}

/// What a data path must be once it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Any,
    File,
    Dir,
    Block,
    Char,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Any => "a file, directory or device",
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Block => "a block device",
            Kind::Char => "a character device",
        }
    }

    fn matches(self, md: &Metadata) -> bool {
        let t = md.file_type();
        match self {
            Kind::Any => !t.is_symlink(),
            Kind::File => t.is_file(),
            Kind::Dir => t.is_dir(),
            Kind::Block => t.is_block_device(),
            Kind::Char => t.is_char_device(),
        }
    }
}

/// Checks a data path handed to a program (an `of=` target, a build directory): no symbolic link
/// anywhere, every existing directory above it locked to root, and the last component, if it
/// exists, of the expected kind. A missing component ends the walk: below a locked directory
/// only root could create it. With `must_exist`, a missing path is refused.
pub fn check_data_path(path: &Path, kind: Kind, must_exist: bool) -> Result<(), Distrust> {
    let names = components(path)?;
    let mut current = PathBuf::from("/");
    let root_md = lstat(&current)?.ok_or_else(|| Distrust::Missing(current.clone()))?;
    locked(&current, &root_md, false)?;
    let last = names.len();
    for (i, name) in names.into_iter().enumerate() {
        current.push(name);
        let Some(md) = lstat(&current)? else {
            return if must_exist {
                Err(Distrust::Missing(current))
            } else {
                Ok(())
            };
        };
        if md.file_type().is_symlink() {
            return Err(Distrust::Symlink(current));
        }
        if i + 1 < last {
            if !md.is_dir() {
                return Err(Distrust::NotADirectory(current));
            }
            locked(&current, &md, false)?;
        } else if !kind.matches(&md) {
            return Err(Distrust::WrongKind {
                path: current,
                expected: kind.describe(),
            });
        }
    }
    Ok(())
}

/// Whether a path is owned by root and writable by no one else, without looking above it.
pub fn locked_here(path: &Path) -> Result<(), Distrust> {
    let md = lstat(path)?.ok_or_else(|| Distrust::Missing(path.to_path_buf()))?;
    locked(path, &md, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_binaries_resolve_through_root_owned_links() {
        let resolved = resolve_program(Path::new("/bin/sh")).unwrap();
        assert!(resolved.is_absolute());
        assert!(resolved.starts_with("/usr") || resolved.starts_with("/bin"));
    }

    #[test]
    fn the_walk_gives_what_stat_gives_through_links_and_parents() {
        use std::os::unix::fs::MetadataExt;
        for p in [
            "/bin/sh",
            "/usr/bin/..",
            "/usr/bin/../bin/true",
            "/",
            "/etc/passwd",
        ] {
            let (resolved, md) = resolve_locked_metadata(Path::new(p)).unwrap();
            let st = fs::metadata(p).unwrap();
            assert_eq!((md.dev(), md.ino()), (st.dev(), st.ino()), "{p}");
            assert_eq!((md.mode(), md.ctime()), (st.mode(), st.ctime()), "{p}");
            let again = fs::metadata(&resolved).unwrap();
            assert_eq!((md.dev(), md.ino()), (again.dev(), again.ino()), "{p}");
        }
    }

    #[test]
    fn relative_and_missing_paths_are_refused() {
        assert!(matches!(
            resolve_locked(Path::new("bin/sh")),
            Err(Distrust::Relative(_))
        ));
        assert!(matches!(
            resolve_locked(Path::new("/nonexistent/gateway-test")),
            Err(Distrust::Missing(_))
        ));
    }

    #[test]
    fn a_data_path_below_a_missing_directory_is_acceptable_unless_required() {
        let p = Path::new("/nonexistent-gateway-dir/file");
        assert!(check_data_path(p, Kind::File, false).is_ok());
        assert!(check_data_path(p, Kind::File, true).is_err());
    }
}
