//! One rtnetlink connection for the life of a driver handle: the socket is opened in the
//! calling thread's network namespace and its task is aborted when the handle is dropped.
//! Owns the connection task only; never changes links or addresses itself.

use std::io;

use futures::TryStreamExt;
use rtnetlink::Handle;
use tokio::task::JoinHandle;

/// `errno` of a netlink error reply, if `e` is one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// A netlink route socket with its connection task.
pub(crate) struct Netlink {
    pub(crate) handle: Handle,
    task: JoinHandle<()>,
}

impl Netlink {
    /// Open a NETLINK_ROUTE socket in this thread's namespace; needs a tokio runtime.
    pub(crate) fn open() -> io::Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        let task = tokio::spawn(conn);
        Ok(Netlink { handle, task })
    }

    /// The index of the link named `name`, `None` when there is none (`ENODEV`).
    pub(crate) async fn index(&self, name: &str) -> Result<Option<u32>, rtnetlink::Error> {
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(Some(link.header.index)),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(nix::libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
