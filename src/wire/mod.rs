//! The heartbeat packet: encoding, HMAC-SHA256 authentication and the receiver's checks.
//!
//! Pure: no sockets, no clock. The daemon hands received bytes to a [`Verifier`]-like
//! receiver and sends what [`encode`] returns.

pub mod keyring;
pub use keyring::{Keyring, KeyringError};
