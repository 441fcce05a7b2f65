//! The per-worker wake-up socket: how a Tokio thread wakes nginx's event loop.
//!
//! nginx can only wake a coroutine from its own thread, through its event
//! loop. The runtime therefore writes one byte to a unix stream socket whose
//! other end is an ngx_lua cosocket read by one dispatcher light thread;
//! epoll wakes it, it drains the completion queue and posts each waiter's
//! semaphore. A byte is written only when the "signalled" flag flips from
//! false to true, so a burst of completions costs one byte and one wake-up,
//! and an idle worker costs nothing.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The writing end of the doorbell plus the "a wake-up is pending" flag.
#[derive(Default)]
pub struct Doorbell {
    signalled: AtomicBool,
    /// The accepted connection from the dispatcher; `None` until it has
    /// connected. Replaced when a restarted dispatcher connects again.
    stream: Mutex<Option<UnixStream>>,
}

impl Doorbell {
    /// Rings unless a ring is already pending. Called from runtime threads
    /// after a completion was queued; never blocks.
    pub fn ring(&self) {
        if self.signalled.swap(true, Ordering::SeqCst) {
            return;
        }
        self.write_byte();
    }

    /// Clears the pending flag. The dispatcher calls this *before* draining
    /// the queue: a completion queued after the drain then rings again,
    /// while one queued before it is seen by the drain.
    pub fn clear(&self) {
        self.signalled.store(false, Ordering::SeqCst);
    }

    fn write_byte(&self) {
        let guard = match self.stream.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(stream) = guard.as_ref() {
            // SAFETY: a valid fd owned by `stream`, a one-byte buffer.
            // EAGAIN means bytes are already unread (a wake-up is pending);
            // EPIPE means the dispatcher is gone. Both are fine to ignore.
            unsafe {
                libc::send(
                    stream.as_raw_fd(),
                    b"!".as_ptr().cast(),
                    1,
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                );
            }
        }
    }

    /// Installs the dispatcher's connection and rings it once, so that
    /// completions queued before it connected are not left unannounced.
    fn attach(&self, stream: UnixStream) {
        let _ = stream.set_nonblocking(true);
        let mut guard = match self.stream.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Some(stream);
        drop(guard);
        self.signalled.store(true, Ordering::SeqCst);
        self.write_byte();
    }

    /// Drops the dispatcher's connection: its pending read returns `closed`.
    pub fn detach(&self) {
        let mut guard = match self.stream.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(s) = guard.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A freshly bound, not yet accepted doorbell endpoint in a private 0700
/// directory. The path is removed as soon as the dispatcher has connected.
pub struct Listener {
    listener: UnixListener,
    dir: PathBuf,
    path: PathBuf,
}

impl Listener {
    /// Binds a new socket in a new private temporary directory.
    pub fn bind() -> io::Result<Listener> {
        let dir = make_private_dir()?;
        let path = dir.join("bell.sock");
        let listener = UnixListener::bind(&path).inspect_err(|_| {
            let _ = std::fs::remove_dir(&dir);
        })?;
        Ok(Listener {
            listener,
            dir,
            path,
        })
    }

    /// The path the dispatcher connects to (`unix:` + this).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for a connection from this very process, attaches it to
    /// `bell`; the path is removed when `self` drops (also if the task
    /// running this is cancelled at shutdown). Connections from other
    /// processes are refused by a peer-pid check.
    pub async fn accept_into(self, bell: &Doorbell) -> io::Result<()> {
        self.listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(self.listener.try_clone()?)?;
        loop {
            let (stream, _) = listener.accept().await?;
            let stream = stream.into_std()?;
            if peer_pid(&stream) == Some(std::process::id() as libc::pid_t) {
                bell.attach(stream);
                return Ok(());
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn make_private_dir() -> io::Result<PathBuf> {
    let base = std::env::var_os("TMPDIR").unwrap_or_else(|| "/tmp".into());
    let mut template = PathBuf::from(base)
        .join("etcd-grpc.XXXXXX")
        .into_os_string()
        .into_encoded_bytes();
    template.push(0);
    // SAFETY: `template` is a writable NUL-terminated buffer ending in
    // XXXXXX, as mkdtemp requires; it creates the directory with mode 0700.
    let ret = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if ret.is_null() {
        return Err(io::Error::last_os_error());
    }
    template.pop();
    // SAFETY: mkdtemp only replaced the X's with ASCII characters.
    let os = unsafe { std::ffi::OsString::from_encoded_bytes_unchecked(template) };
    Ok(PathBuf::from(os))
}

fn peer_pid(stream: &UnixStream) -> Option<libc::pid_t> {
    let mut cred: libc::ucred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a `ucred` of exactly `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn one_byte_per_burst_and_path_removed() {
        let rt = crate::runtime::build_throwaway_runtime().unwrap();
        let bell = std::sync::Arc::new(Doorbell::default());
        let l = Listener::bind().unwrap();
        let path = l.path().to_path_buf();
        let mut client = UnixStream::connect(&path).unwrap();
        rt.block_on(l.accept_into(&bell)).unwrap();
        assert!(!path.exists(), "socket path must be removed after accept");

        let mut buf = [0u8; 16];
        // attach rings once
        assert_eq!(client.read(&mut buf).unwrap(), 1);
        bell.clear();
        bell.ring();
        bell.ring();
        bell.ring();
        client.set_nonblocking(true).unwrap();
        assert_eq!(client.read(&mut buf).unwrap(), 1, "a burst rings once");
        assert!(client.read(&mut buf).is_err(), "nothing more pending");
        bell.clear();
        bell.ring();
        assert_eq!(client.read(&mut buf).unwrap(), 1, "rings again after clear");
    }
}
