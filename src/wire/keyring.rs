//! The cluster's HMAC keys: one to sign with, several accepted, so a key can be rotated.

use std::collections::BTreeMap;

/// Minimum length of a secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Why a keyring cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    /// Key id 0 is reserved.
    #[error("key id 0 is not allowed (expected 1..=255)")]
    ZeroId,
    /// A secret is too short to be a safe HMAC-SHA256 key.
    #[error("key {id} is {len} bytes long (expected at least {MIN_SECRET_LEN})")]
    ShortSecret {
        /// The key id.
        id: u8,
        /// Its length.
        len: usize,
    },
    /// The sending key id has no secret.
    #[error("the sending key {0} is not defined")]
    MissingSendKey(u8),
}

/// HMAC keys by id; `send` is the one used for outgoing packets.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    send: u8,
    keys: BTreeMap<u8, Vec<u8>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("Keyring")
            .field("send", &self.send)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A keyring signing with `send` and accepting every key in `keys`.
    pub fn new(send: u8, keys: BTreeMap<u8, Vec<u8>>) -> Result<Keyring, KeyringError> {
        for (&id, secret) in &keys {
            if id == 0 {
                return Err(KeyringError::ZeroId);
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(KeyringError::ShortSecret {
                    id,
                    len: secret.len(),
                });
            }
        }
        if !keys.contains_key(&send) {
            return Err(KeyringError::MissingSendKey(send));
        }
        Ok(Keyring { send, keys })
    }

    /// The id of the key outgoing packets are signed with.
    pub fn send_id(&self) -> u8 {
        self.send
    }

    /// The secret of the sending key.
    pub fn send_secret(&self) -> &[u8] {
        // Invariant from `new`: the send key is present.
        self.keys.get(&self.send).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The secret for a received key id, if we accept it.
    pub fn get(&self, id: u8) -> Option<&[u8]> {
        self.keys.get(&id).map(Vec::as_slice)
    }

    /// The accepted key ids.
    pub fn ids(&self) -> impl Iterator<Item = u8> + '_ {
        self.keys.keys().copied()
    }
}
