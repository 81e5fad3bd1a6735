//! The admin socket: `status`, `takeover` and `standby` against the running daemon.
//!
//! A unix stream socket, mode 0600 (root only): the client writes one JSON line
//! `{"request":"status"}` and reads one JSON line back. The server forwards each request as a
//! [`Call`] on its own channel to the daemon loop, which alone touches the state machine.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// How long a client waits for the daemon's answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the admin socket or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The socket could not be created.
    #[error("admin socket {path}: {what}: {source}")]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// The call that failed.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon answers on the socket.
    #[error("admin socket {0}: another nova-network-ha daemon is running (it answers there)")]
    InUse(PathBuf),
    /// No daemon listens.
    #[error(
        "no nova-network-ha daemon answers on {path} ({source}); is it running (`systemctl status nova-network-ha`)?"
    )]
    NotRunning {
        /// Socket path.
        path: PathBuf,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed or timed out.
    #[error("admin socket {path}: {detail}")]
    Exchange {
        /// Socket path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// A request from the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Show the state.
    Status,
    /// Become active.
    Takeover,
    /// Hand the service over.
    Standby,
}

impl Request {
    fn name(self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Takeover => "takeover",
            Request::Standby => "standby",
        }
    }

    fn parse(name: &str) -> Option<Request> {
        match name {
            "status" => Some(Request::Status),
            "takeover" => Some(Request::Takeover),
            "standby" => Some(Request::Standby),
            _ => None,
        }
    }
}

/// A request from a client, waiting for the daemon's answer.
#[derive(Debug)]
pub struct Call {
    /// What the client asks.
    pub request: Request,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Reply>,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The status document.
    Status(Box<Value>),
    /// The request was taken; the node's state now.
    Accepted(String),
    /// The request cannot be met, and why.
    Refused(String),
}

impl Reply {
    fn to_json(&self) -> Value {
        match self {
            Reply::Status(v) => json!({"ok": true, "status": v}),
            Reply::Accepted(state) => json!({"ok": true, "state": state}),
            Reply::Refused(why) => json!({"ok": false, "error": why}),
        }
    }
}

/// The listening socket.
pub struct Server {
    listener: UnixListener,
}

impl Server {
    /// Binds `path` (mode 0600), replacing a stale socket but never a live daemon's.
    pub fn bind(path: &Path) -> Result<Server, AdminError> {
        let fail = |what, source| AdminError::Bind {
            path: path.to_owned(),
            what,
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail("create directory", e))?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(AdminError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(|e| fail("remove stale socket", e))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| fail("bind", e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| fail("chmod 0600", e))?;
        Ok(Server { listener })
    }

    /// Answers clients until the daemon loop (the receiver of `calls`) is gone.
    pub async fn serve(self, calls: mpsc::Sender<Call>) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let calls = calls.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CLIENT_TIMEOUT, answer(stream, calls)).await;
            });
        }
    }
}

async fn answer(stream: UnixStream, calls: mpsc::Sender<Call>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let request = serde_json::from_str::<Value>(&line)
        .ok()
        .and_then(|v| v.get("request")?.as_str().and_then(Request::parse));
    let reply = match request {
        None => Reply::Refused(format!(
            "bad request {:?} (expected {{\"request\":\"status|takeover|standby\"}})",
            line.trim()
        )),
        Some(request) => {
            let (reply, rx) = oneshot::channel();
            if calls.send(Call { request, reply }).await.is_err() {
                Reply::Refused("the daemon is stopping".into())
            } else {
                rx.await
                    .unwrap_or_else(|_| Reply::Refused("the daemon is stopping".into()))
            }
        }
    };
    let mut out = reply.to_json().to_string();
    out.push('\n');
    write.write_all(out.as_bytes()).await
}

/// Sends `request` to the daemon at `path` and returns its JSON answer.
pub async fn request(path: &Path, request: Request) -> Result<Value, AdminError> {
    let exchange = |detail: String| AdminError::Exchange {
        path: path.to_owned(),
        detail,
    };
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| AdminError::NotRunning {
            path: path.to_owned(),
            source,
        })?;
    let (read, mut write) = stream.into_split();
    let body = format!("{}\n", json!({"request": request.name()}));
    let work = async {
        write.write_all(body.as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await?;
        Ok::<String, std::io::Error>(line)
    };
    let line = tokio::time::timeout(CLIENT_TIMEOUT, work)
        .await
        .map_err(|_| exchange(format!("no answer within {CLIENT_TIMEOUT:?}")))?
        .map_err(|e| exchange(e.to_string()))?;
    serde_json::from_str(&line).map_err(|e| exchange(format!("bad answer {line:?}: {e}")))
}
