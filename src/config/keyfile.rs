//! The authkeys-like key file: `auth <n>` names the key we sign with, `<n> hmac-sha256
//! <secret>` lines give the keys we accept (several, so a key can be rotated).
//!
//! Secret encoding rule (no prefix needed): a secret made only of hex digits and of even
//! length is hex; anything else is standard base64 (padding optional). A 64-digit hex secret
//! is therefore always read as 32 bytes of hex. Decoded secrets must be at least
//! [`MIN_SECRET_LEN`] bytes. `#` starts a comment (hex and base64 never contain it); blank
//! lines are ignored. Like heartbeat's authkeys, the file must not be accessible to group or
//! others.
//!
//! Owns reading, the mode check and parsing; builds a [`Keyring`] and never logs secrets.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::wire::keyring::MIN_SECRET_LEN;
use crate::wire::{Keyring, KeyringError};

/// The one algorithm we accept.
pub const ALGORITHM: &str = "hmac-sha256";

/// Why the key file is refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It cannot be read.
    #[error("{}: cannot read the key file: {source}", file.display())]
    Read {
        /// The key file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Group or others may read or write it: the secret may have leaked.
    #[error("{}: mode {mode:04o} gives group or others access to the key file (expected 0600 or stricter, e.g. chmod 600)", file.display())]
    Mode {
        /// The key file.
        file: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line that is not `auth <n>` nor `<n> hmac-sha256 <secret>`.
    #[error("{}:{line}: found {found}, expected {expected}", file.display())]
    Syntax {
        /// The key file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// What was found (secrets are never shown).
        found: String,
        /// What was expected.
        expected: String,
    },
    /// An algorithm other than hmac-sha256 (heartbeat's crc, md5 and sha1 are not accepted).
    #[error("{}:{line}: algorithm {found:?} is not supported (expected {ALGORITHM})", file.display())]
    Algorithm {
        /// The key file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The algorithm named.
        found: String,
    },
    /// A secret that is neither hex nor base64.
    #[error("{}:{line}: the secret of key {id} is neither hex nor base64", file.display())]
    Encoding {
        /// The key file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The key id.
        id: u8,
    },
    /// A secret too short for HMAC-SHA256.
    #[error("{}:{line}: the secret of key {id} is {len} bytes long (expected at least {MIN_SECRET_LEN} bytes after hex or base64 decoding)", file.display())]
    ShortSecret {
        /// The key file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The key id.
        id: u8,
        /// Decoded length.
        len: usize,
    },
    /// The same key id twice.
    #[error("{}:{line}: key {id} is defined again (first on line {first}; expected each id once)", file.display())]
    DuplicateKey {
        /// The key file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The key id.
        id: u8,
        /// Line of the first definition.
        first: usize,
    },
    /// Two `auth` lines.
    #[error("{}:{line}: a second `auth` line (first on line {first}; expected one)", file.display())]
    DuplicateAuth {
        /// The key file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// Line of the first one.
        first: usize,
    },
    /// No `auth <n>` line.
    #[error("{}: no `auth <n>` line (expected one naming the key to send with)", file.display())]
    NoAuth {
        /// The key file.
        file: PathBuf,
    },
    /// `auth <n>` names a key that is not defined.
    #[error("{}:{line}: `auth {id}` names key {id}, which is not defined (expected a `{id} {ALGORITHM} <secret>` line)", file.display())]
    UndefinedSendKey {
        /// The key file.
        file: PathBuf,
        /// Line of the `auth` line.
        line: usize,
        /// The key id.
        id: u8,
    },
    /// The keyring refused the keys (cannot happen after the checks above; kept for safety).
    #[error("{}: {source}", file.display())]
    Keyring {
        /// The key file.
        file: PathBuf,
        /// The keyring's reason.
        source: KeyringError,
    },
}

/// Read `path`, refuse it if group or others have access, then parse it.
pub fn load(path: &Path) -> Result<Keyring, Vec<KeyFileError>> {
    let meta = std::fs::metadata(path).map_err(|source| {
        vec![KeyFileError::Read {
            file: path.to_owned(),
            source,
        }]
    })?;
    check_mode(path, meta.permissions().mode())?;
    let text = std::fs::read_to_string(path).map_err(|source| {
        vec![KeyFileError::Read {
            file: path.to_owned(),
            source,
        }]
    })?;
    parse(path, &text)
}

/// Refuse a mode that gives group or others any access (`mode & 0o077 != 0`).
pub fn check_mode(path: &Path, mode: u32) -> Result<(), Vec<KeyFileError>> {
    let perm = mode & 0o7777;
    if perm & 0o077 != 0 {
        return Err(vec![KeyFileError::Mode {
            file: path.to_owned(),
            mode: perm,
        }]);
    }
    Ok(())
}

/// Decode a secret by the module's rule: all hex digits and even length is hex, else base64.
pub fn decode_secret(text: &str) -> Option<Vec<u8>> {
    if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(text).ok();
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .ok()
}

fn key_id(text: &str) -> Option<u8> {
    text.parse::<u8>().ok().filter(|&n| n != 0)
}

/// Parse the key file's text; every bad line is reported.
pub fn parse(path: &Path, text: &str) -> Result<Keyring, Vec<KeyFileError>> {
    let file = || path.to_owned();
    let mut errors = Vec::new();
    let mut send: Option<(u8, usize)> = None;
    let mut keys: BTreeMap<u8, (Vec<u8>, usize)> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let words: Vec<&str> = content.split_whitespace().collect();
        match words.as_slice() {
            ["auth", n] => match key_id(n) {
                Some(id) => match send {
                    Some((_, first)) => errors.push(KeyFileError::DuplicateAuth {
                        file: file(),
                        line,
                        first,
                    }),
                    None => send = Some((id, line)),
                },
                None => errors.push(KeyFileError::Syntax {
                    file: file(),
                    line,
                    found: format!("`auth {n}`"),
                    expected: "`auth <n>` with n in 1..=255".into(),
                }),
            },
            [n, algorithm, secret] => {
                let Some(id) = key_id(n) else {
                    errors.push(KeyFileError::Syntax {
                        file: file(),
                        line,
                        found: format!("key id {n:?}"),
                        expected: format!("`<n> {ALGORITHM} <secret>` with n in 1..=255"),
                    });
                    continue;
                };
                if *algorithm != ALGORITHM {
                    errors.push(KeyFileError::Algorithm {
                        file: file(),
                        line,
                        found: (*algorithm).to_owned(),
                    });
                    continue;
                }
                let Some(secret) = decode_secret(secret) else {
                    errors.push(KeyFileError::Encoding {
                        file: file(),
                        line,
                        id,
                    });
                    continue;
                };
                if secret.len() < MIN_SECRET_LEN {
                    errors.push(KeyFileError::ShortSecret {
                        file: file(),
                        line,
                        id,
                        len: secret.len(),
                    });
                    continue;
                }
                if let Some((_, first)) = keys.get(&id) {
                    errors.push(KeyFileError::DuplicateKey {
                        file: file(),
                        line,
                        id,
                        first: *first,
                    });
                    continue;
                }
                keys.insert(id, (secret, line));
            }
            other => errors.push(KeyFileError::Syntax {
                file: file(),
                line,
                // Never echo the line: it may hold a secret.
                found: format!("a line of {} words", other.len()),
                expected: format!("`auth <n>` or `<n> {ALGORITHM} <secret>`"),
            }),
        }
    }
    match send {
        None => errors.push(KeyFileError::NoAuth { file: file() }),
        Some((id, line)) if !keys.contains_key(&id) && !errors.iter().any(|e| defines(e, id)) => {
            errors.push(KeyFileError::UndefinedSendKey {
                file: file(),
                line,
                id,
            })
        }
        Some(_) => {}
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let send = send.map_or(0, |(id, _)| id);
    let keys = keys.into_iter().map(|(id, (s, _))| (id, s)).collect();
    Keyring::new(send, keys).map_err(|source| {
        vec![KeyFileError::Keyring {
            file: file(),
            source,
        }]
    })
}

/// Whether an error is about a line that tried to define key `id` (then "undefined" would be
/// a second message about the same mistake).
fn defines(e: &KeyFileError, id: u8) -> bool {
    matches!(e, KeyFileError::Encoding { id: i, .. } | KeyFileError::ShortSecret { id: i, .. } if *i == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const HEX32: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn msgs(r: Result<Keyring, Vec<KeyFileError>>) -> Vec<String> {
        r.unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn one_hex_key() {
        let k = parse(
            Path::new("k"),
            &format!("# keys\nauth 1\n\n1 hmac-sha256 {HEX32}\n"),
        )
        .unwrap();
        assert_eq!(k.send_id(), 1);
        assert_eq!(k.send_secret(), hex::decode(HEX32).unwrap().as_slice());
    }

    #[test]
    fn several_keys_for_rotation_hex_and_base64() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 40]);
        let text = format!("auth 2\n1 hmac-sha256 {HEX32}  # old\n2 hmac-sha256 {b64}\n");
        let k = parse(Path::new("k"), &text).unwrap();
        assert_eq!(k.send_id(), 2);
        assert_eq!(k.ids().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(k.get(2), Some(&[7u8; 40][..]));
        // Unpadded base64 is accepted too.
        let nopad = base64::engine::general_purpose::STANDARD_NO_PAD.encode([9u8; 34]);
        let k = parse(Path::new("k"), &format!("auth 3\n3 hmac-sha256 {nopad}\n")).unwrap();
        assert_eq!(k.get(3), Some(&[9u8; 34][..]));
    }

    #[test]
    fn short_secret_refused_with_line() {
        let m = msgs(parse(
            Path::new("/etc/k"),
            "auth 1\n\n1 hmac-sha256 0011223344\n",
        ));
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(
            m[0],
            "/etc/k:3: the secret of key 1 is 5 bytes long (expected at least 32 bytes after hex or base64 decoding)"
        );
    }

    #[test]
    fn every_bad_line_is_reported_without_secrets() {
        let text = format!(
            "auth 1\nauth 2\n0 hmac-sha256 {HEX32}\n1 sha1 YourSecretPassPhrase\n1 hmac-sha256 not*base64!\nhello there world again\n1 hmac-sha256 {HEX32}\n1 hmac-sha256 {HEX32}\n"
        );
        let m = msgs(parse(Path::new("k"), &text));
        assert_eq!(m.len(), 6, "{m:#?}");
        assert!(
            m[0].starts_with("k:2: a second `auth` line (first on line 1"),
            "{}",
            m[0]
        );
        assert!(m[1].starts_with("k:3: found key id \"0\""), "{}", m[1]);
        assert_eq!(
            m[2],
            "k:4: algorithm \"sha1\" is not supported (expected hmac-sha256)"
        );
        assert_eq!(m[3], "k:5: the secret of key 1 is neither hex nor base64");
        assert!(m[4].starts_with("k:6: found a line of 4 words"), "{}", m[4]);
        assert!(
            m[5].starts_with("k:8: key 1 is defined again (first on line 7"),
            "{}",
            m[5]
        );
        for s in &m {
            assert!(!s.contains("YourSecret") && !s.contains(HEX32), "{s}");
        }
    }

    #[test]
    fn auth_line_required_and_must_name_a_key() {
        let m = msgs(parse(Path::new("k"), &format!("1 hmac-sha256 {HEX32}\n")));
        assert_eq!(
            m,
            vec!["k: no `auth <n>` line (expected one naming the key to send with)"]
        );
        let m = msgs(parse(
            Path::new("k"),
            &format!("auth 2\n1 hmac-sha256 {HEX32}\n"),
        ));
        assert_eq!(m.len(), 1);
        assert!(
            m[0].starts_with("k:1: `auth 2` names key 2, which is not defined"),
            "{}",
            m[0]
        );
        let m = msgs(parse(Path::new("k"), "auth 256\n"));
        assert!(
            m[0].starts_with("k:1: found `auth 256`, expected `auth <n>` with n in 1..=255"),
            "{}",
            m[0]
        );
    }

    #[test]
    fn mode_check_names_file_and_octal_mode() {
        let m = msgs(check_mode(Path::new("/etc/k"), 0o100644).map(|_| unreachable_keyring()));
        assert_eq!(
            m,
            vec![
                "/etc/k: mode 0644 gives group or others access to the key file (expected 0600 or stricter, e.g. chmod 600)"
            ]
        );
        assert!(check_mode(Path::new("k"), 0o100600).is_ok());
        assert!(check_mode(Path::new("k"), 0o400).is_ok());
        assert!(check_mode(Path::new("k"), 0o604).is_err());
        assert!(check_mode(Path::new("k"), 0o620).is_err());
    }

    fn unreachable_keyring() -> Keyring {
        panic!("check_mode should have failed")
    }

    #[test]
    fn load_refuses_0644_file_and_accepts_0600() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "auth 1\n1 hmac-sha256 {HEX32}").unwrap();
        let path = f.path().to_owned();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let m = msgs(load(&path));
        assert_eq!(m.len(), 1);
        assert!(
            m[0].starts_with(&format!("{}: mode 0644 ", path.display())),
            "{}",
            m[0]
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load(&path).unwrap().send_id(), 1);
    }

    #[test]
    fn missing_file_is_named() {
        let m = msgs(load(Path::new("/nonexistent/authkeys")));
        assert!(
            m[0].starts_with("/nonexistent/authkeys: cannot read the key file"),
            "{}",
            m[0]
        );
    }

    #[test]
    fn hex_rule_wins_over_base64() {
        // Even-length all-hex text is hex even though it is also valid base64.
        assert_eq!(decode_secret("abcd"), Some(vec![0xab, 0xcd]));
        assert_eq!(decode_secret("!!"), None);
        assert_eq!(decode_secret("aGVsbG8="), Some(b"hello".to_vec()));
    }
}
