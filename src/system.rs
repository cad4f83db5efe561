//! The crate's only `unsafe` code: marking inherited descriptors close-on-exec, which the safe
//! wrappers cannot do for descriptors the process does not own as Rust objects.
#![allow(unsafe_code)]

use std::fs;
use std::io;

use nix::libc;

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
