//! authkeys: heartbeat's shared secrets. Only checked, never carried over: the secret is
//! neither reused nor printed.

use super::{Diag, File};

/// What authkeys says, without its secrets.
#[derive(Debug, Default)]
pub(super) struct AuthKeys {
    /// The key id heartbeat signed with (`auth <n>`) and its method.
    pub active: Option<(u8, String)>,
}

/// Parses authkeys, recording every error, note and warning in `d`. Messages never contain a
/// secret.
pub(super) fn parse(text: &str, d: &mut Diag) -> AuthKeys {
    let mut auth: Option<(u8, usize)> = None;
    let mut keys: Vec<(u8, String, usize)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.trim();
        // Only whole-line comments: a `#` may be part of a secret.
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let mut tokens = content.split_whitespace();
        let first = tokens.next().unwrap_or("");
        if first == "auth" {
            let args: Vec<&str> = tokens.collect();
            match args.as_slice() {
                [n] => match key_id(n) {
                    Some(n) if auth.is_none() => auth = Some((n, line)),
                    Some(_) => d.error(
                        File::AuthKeys,
                        Some(line),
                        "auth: found a second auth line, expected one".to_string(),
                    ),
                    None => d.error(
                        File::AuthKeys,
                        Some(line),
                        format!("auth: found {n:?}, expected a key number 1..=255"),
                    ),
                },
                _ => d.error(
                    File::AuthKeys,
                    Some(line),
                    format!(
                        "auth: found {:?}, expected `auth <key number>`",
                        args.join(" ")
                    ),
                ),
            }
            continue;
        }
        let Some(id) = key_id(first) else {
            d.error(
                File::AuthKeys,
                Some(line),
                format!(
                    "found {first:?}, expected `auth <n>` or a key line `<n> sha1|md5 <secret>`"
                ),
            );
            continue;
        };
        let method = tokens.next().unwrap_or("").to_ascii_lowercase();
        let has_secret = tokens.next().is_some();
        if let Some((_, _, first_line)) = keys.iter().find(|(k, _, _)| *k == id) {
            d.error(
                File::AuthKeys,
                Some(line),
                format!(
                    "key {id}: found a second definition, expected one (first on line {first_line})"
                ),
            );
            continue;
        }
        match method.as_str() {
            "crc" => d.error(
                File::AuthKeys,
                Some(line),
                format!(
                    "key {id}: found method \"crc\", expected sha1 or md5: crc is a checksum \
                     without a secret, anyone on the heartbeat network could forge heartbeats; \
                     refusing to import an unauthenticated cluster"
                ),
            ),
            "sha1" | "md5" if !has_secret => d.error(
                File::AuthKeys,
                Some(line),
                format!(
                    "key {id}: found {method} without a secret, expected `{id} {method} <secret>`"
                ),
            ),
            "sha1" | "md5" => keys.push((id, method, line)),
            "" => d.error(
                File::AuthKeys,
                Some(line),
                format!("key {id}: found no method, expected sha1 or md5"),
            ),
            other => d.error(
                File::AuthKeys,
                Some(line),
                format!("key {id}: found method {other:?}, expected sha1 or md5"),
            ),
        }
    }
    let mut out = AuthKeys::default();
    match auth {
        None => d.error(
            File::AuthKeys,
            None,
            "found no `auth <n>` line, expected one naming the key in use".to_string(),
        ),
        Some((n, line)) => match keys.iter().find(|(k, _, _)| *k == n) {
            Some((_, method, _)) => out.active = Some((n, method.clone())),
            // A crc or broken key line already has its error.
            None if d.has_error_for(File::AuthKeys) => {}
            None => d.error(
                File::AuthKeys,
                Some(line),
                format!(
                    "auth: found key {n}, expected a key defined by a `{n} sha1|md5 <secret>` line"
                ),
            ),
        },
    }
    out
}

fn key_id(s: &str) -> Option<u8> {
    s.parse::<u8>().ok().filter(|&n| n > 0)
}
