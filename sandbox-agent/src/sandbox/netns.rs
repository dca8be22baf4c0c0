//! A pool of empty network namespaces.
//!
//! Creating a network namespace costs about a millisecond and tearing one down much
//! more (in a kernel worker), which would dominate a short run. An empty namespace —
//! only `lo`, down — holds no state a run can change without CAP_NET_ADMIN, which runs
//! never have, and its sockets die with the processes that own them; so once a run's
//! pid namespace is gone its network namespace is as new, and the next run may join it.
//! Concurrent runs never share one: each takes its own from the pool.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;

use super::{SandboxError, sys};

#[derive(Default)]
pub(super) struct Pool {
    spare: Mutex<Vec<OwnedFd>>,
}

impl Pool {
    /// A namespace no running sandbox is in.
    pub fn take(&self) -> Result<OwnedFd, SandboxError> {
        if let Some(fd) = self.spare.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(fd);
        }
        create()
    }

    /// Returns a namespace whose runs are all gone.
    pub fn put(&self, fd: OwnedFd) {
        if let Ok(mut v) = self.spare.lock() {
            v.push(fd);
        }
    }
}

/// Creates an empty network namespace on a short-lived thread, so the caller's own
/// namespace is untouched (unshare affects only the calling thread's namespace).
pub(super) fn create() -> Result<OwnedFd, SandboxError> {
    let made = std::thread::spawn(|| -> Result<OwnedFd, i32> {
        sys::unshare(libc::CLONE_NEWNET)?;
        let path = c"/proc/thread-self/ns/net";
        // SAFETY: opening a NUL-terminated static path.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(sys::errno());
        }
        // SAFETY: open returned a new descriptor that we now own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
    .join();
    match made {
        Ok(Ok(fd)) => Ok(fd),
        Ok(Err(errno)) => Err(SandboxError::Setup {
            step: "creating a network namespace".into(),
            errno: std::io::Error::from_raw_os_error(errno),
        }),
        Err(_) => Err(SandboxError::Invalid("the network namespace thread panicked".into())),
    }
}
