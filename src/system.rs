//! System calls as a request needs them. The crate's only `unsafe` code is here: marking
//! inherited descriptors close-on-exec, which the safe wrappers cannot do for descriptors the
//! process does not own as Rust objects, and reading the path the kernel started us by.
#![allow(unsafe_code)]

use std::ffi::{CStr, OsStr};
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, OFlag, AT_FDCWD};
use nix::libc;
use nix::sys::stat::Mode;

/// Opens `path` close-on-exec with `flags` (and `mode` if it creates). musl's `open`, which
/// `std::fs` calls, follows every `O_CLOEXEC` open with an `fcntl(F_SETFD)` for kernels older
/// than 2.6.23; its `openat` does not. A request opens four files: this saves four system calls
/// each time.
pub fn open(path: &Path, flags: OFlag, mode: u32) -> io::Result<File> {
    let fd = openat(
        AT_FDCWD,
        path,
        flags | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )?;
    Ok(File::from(fd))
}

/// Opens `path` for reading, close-on-exec.
pub fn open_read(path: &Path) -> io::Result<File> {
    open(path, OFlag::O_RDONLY, 0)
}

/// Opens `path` for reading, close-on-exec, refusing a symbolic link as the last component.
pub fn open_read_nofollow(path: &Path) -> io::Result<File> {
    open(path, OFlag::O_RDONLY | OFlag::O_NOFOLLOW, 0)
}

/// The path of the running program: the absolute path it was started by (sudo, and the SSH
/// re-entry, start it by the absolute path the sudoers entry names), else `/proc/self/exe`.
/// The caller walks the path (links, directories, file) as root's alone, so where the path
/// leads is checked either way. Reading `/proc` costs a request tens of µs: the first look at
/// `/proc/self` builds its entries, and the exit tears them down again.
pub fn current_exe() -> io::Result<PathBuf> {
    match exec_path() {
        Some(p) if p.is_absolute() && !p.starts_with("/proc") && !p.starts_with("/dev") => Ok(p),
        _ => std::env::current_exe(),
    }
}

/// The path given to `execve` (the kernel's `AT_EXECFN`).
fn exec_path() -> Option<PathBuf> {
    // SAFETY: getauxval only reads the auxiliary vector the kernel placed on the initial
    // stack. For AT_EXECFN it returns the address of the NUL-terminated path execve was given,
    // which stays on that stack for the life of the process (nothing in this program writes
    // there), or 0 when the vector has no such entry; 0 is checked before the address is read.
    let p = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const libc::c_char;
    if p.is_null() {
        return None;
    }
    // SAFETY: p is non-null and points to the kernel's NUL-terminated string (see above),
    // alive and unchanged for the whole process; the bytes are copied out at once.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    Some(PathBuf::from(OsStr::from_bytes(bytes)))
}

/// Whether this process has a controlling terminal: opening `/dev/tty` fails with ENXIO exactly
/// when it has none. Any other answer counts as yes, so the caller errs towards detaching.
pub fn has_controlling_terminal() -> bool {
    let tty = open(
        Path::new("/dev/tty"),
        OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
        0,
    );
    !matches!(tty, Err(e) if e.raw_os_error() == Some(libc::ENXIO))
}

/// Sets close-on-exec on every descriptor from `first` up.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range takes three integers and reads or writes no memory of this process;
    // with CLOSE_RANGE_CLOEXEC it only sets a flag on descriptors, closing none.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Kernels before 5.11: one descriptor at a time.
    let mut fds = Vec::new();
    for entry in fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        {
            fds.push(fd);
        }
    }
    for fd in fds.into_iter().filter(|&fd| fd >= first as i32) {
        // SAFETY: fcntl(F_SETFD) on an integer descriptor touches no memory; a descriptor
        // closed meanwhile (the directory handle above) just yields EBADF, which is ignored.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_start_path_leads_to_the_running_program() {
        let started = super::exec_path().expect("the kernel gives the start path");
        assert!(started.is_absolute(), "cargo starts tests by absolute path");
        let ours = super::current_exe().unwrap();
        assert_eq!(ours, started);
        let running = std::fs::metadata("/proc/self/exe").unwrap();
        let found = std::fs::metadata(&ours).unwrap();
        assert_eq!((found.dev(), found.ino()), (running.dev(), running.ino()));
    }
}
