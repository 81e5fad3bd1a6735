//! The `[bus]` section: nova's RabbitMQ, its password and CA file.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Environment variable that may hold the bus password.
pub const BUS_PASSWORD_ENV: &str = "NOVA_NETWORK_HA_BUS_PASSWORD";

pub(super) fn check_bus(
    cx: &mut Ctx<'_>,
    b: raw::RawBus,
    inputs: &Inputs<'_>,
) -> Option<Option<Bus>> {
    cx.unknown("bus", &b.unknown, raw::BUS_KEYS);
    let url = match present(&b.url) {
        None => return Some(None),
        Some(v) => match &v.kind {
            ValueKind::String(s) if s.is_empty() => return Some(None),
            _ => cx.string(
                "bus.url",
                v,
                "an amqp:// or amqps:// URL, or \"\" for no bus",
            )?,
        },
    };
    let url_ok = match url.split_once("://") {
        Some(("amqp" | "amqps", rest)) => {
            let authority = rest.split('/').next().unwrap_or_default();
            let host = authority.rsplit('@').next().unwrap_or_default();
            if authority
                .split('@')
                .next()
                .is_some_and(|userinfo| authority.contains('@') && userinfo.contains(':'))
            {
                cx.invalid(
                    "bus.url",
                    "a URL with a password",
                    "the user in the URL and the password in bus.password_file or $NOVA_NETWORK_HA_BUS_PASSWORD (a URL gets logged)",
                );
                false
            } else if host.is_empty() {
                cx.invalid(
                    "bus.url",
                    format!("{url:?}"),
                    "a URL with a host, like amqp://nova@10.0.0.5:5672/",
                );
                false
            } else {
                true
            }
        }
        _ => {
            cx.invalid("bus.url", format!("{url:?}"), "an amqp:// or amqps:// URL");
            false
        }
    };
    let password = match present(&b.password_file) {
        Some(v) if !matches!(&v.kind, ValueKind::String(s) if s.is_empty()) => {
            let file = cx.string("bus.password_file", v, "a file path")?;
            let path = cx.path(&file);
            match std::fs::metadata(&path) {
                Err(e) => {
                    cx.invalid(
                        "bus.password_file",
                        format!("{} ({e})", path.display()),
                        "a readable file holding the password",
                    );
                    None
                }
                Ok(meta) => {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = meta.permissions().mode() & 0o7777;
                    if mode & 0o077 != 0 {
                        cx.invalid(
                            "bus.password_file",
                            format!("{} with mode {mode:04o}", path.display()),
                            "a file that group and others cannot access (chmod 600)",
                        );
                        None
                    } else {
                        match std::fs::read_to_string(&path) {
                            Ok(text) => Some(Some(crate::config::Secret(
                                text.trim_end_matches(['\n', '\r']).to_owned(),
                            ))),
                            Err(e) => {
                                cx.invalid(
                                    "bus.password_file",
                                    format!("{} ({e})", path.display()),
                                    "a readable file holding the password",
                                );
                                None
                            }
                        }
                    }
                }
            }
        }
        _ => Some((inputs.env_password)().map(crate::config::Secret)),
    };
    let ca = match present(&b.ca_file) {
        Some(v) if !matches!(&v.kind, ValueKind::String(s) if s.is_empty()) => {
            let file = cx.string("bus.ca_file", v, "a PEM file of CA certificates")?;
            let path = cx.path(&file);
            if !url.starts_with("amqps://") {
                cx.invalid(
                    "bus.ca_file",
                    format!("{} with bus.url {:?}", path.display(), url),
                    "an amqps:// bus.url (the CA file is for TLS), or no bus.ca_file",
                );
                None
            } else {
                match std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|pem| pem_certificates(&pem).map(|n| (pem, n)))
                {
                    Ok((pem, certificates)) => Some(Some(crate::config::CaFile {
                        path,
                        pem,
                        certificates,
                    })),
                    Err(e) => {
                        cx.invalid(
                            "bus.ca_file",
                            format!("{} ({e})", path.display()),
                            "a readable PEM file with at least one CERTIFICATE block",
                        );
                        None
                    }
                }
            }
        }
        _ => Some(None),
    };
    let exchange = match present(&b.exchange) {
        None => Some("nova-network-ha".to_owned()),
        Some(v) => cx.string("bus.exchange", v, "an exchange name"),
    };
    let mut duration =
        |key: &str, v: &Option<Value>, default: Duration| cx.positive_duration(key, v, default);
    let queue_interval = duration(
        "bus.queue_interval",
        &b.queue_interval,
        Duration::from_secs(1),
    );
    let consumer_grace = duration(
        "bus.consumer_grace",
        &b.consumer_grace,
        Duration::from_secs(10),
    );
    let backlog_window = duration(
        "bus.backlog_window",
        &b.backlog_window,
        Duration::from_secs(5),
    );
    if let (Some(q), Some(g)) = (queue_interval, consumer_grace)
        && g < q
    {
        cx.invalid(
            "bus.consumer_grace",
            format!("\"{g:?}\""),
            format!("at least bus.queue_interval ({q:?}): one sample is needed to see a consumer"),
        );
    }
    if let (Some(q), Some(w)) = (queue_interval, backlog_window)
        && w < 2 * q
    {
        cx.invalid(
            "bus.backlog_window",
            format!("\"{w:?}\""),
            format!(
                "at least 2 x bus.queue_interval ({:?}): a growth needs two samples",
                2 * q
            ),
        );
    }
    let alert_buffer = match present(&b.alert_buffer) {
        None => Some(1000),
        Some(v) => cx
            .int("bus.alert_buffer", v, 1, 1_000_000)
            .and_then(|n| usize::try_from(n).ok()),
    };
    let heartbeat_path = match present(&b.heartbeat_path) {
        None => Some(true),
        Some(v) => cx.boolean("bus.heartbeat_path", v),
    };
    if !url_ok {
        return None;
    }
    Some(Some(Bus {
        url,
        password: password?,
        ca: ca?,
        exchange: exchange?,
        queue_interval: queue_interval?,
        consumer_grace: consumer_grace?,
        backlog_window: backlog_window?,
        alert_buffer: alert_buffer?,
        heartbeat_path: heartbeat_path?,
    }))
}

/// How many PEM `CERTIFICATE` blocks `text` holds, each with valid base64; an error names
/// the line of the first broken block, or says that there is none.
pub(super) fn pem_certificates(text: &str) -> Result<usize, String> {
    use base64::Engine as _;
    let mut count = 0;
    let mut block: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        match &mut block {
            None if line == "-----BEGIN CERTIFICATE-----" => block = Some((i + 1, String::new())),
            None => {}
            Some((start, body)) if line == "-----END CERTIFICATE-----" => {
                match base64::engine::general_purpose::STANDARD.decode(body.as_bytes()) {
                    Ok(der) if !der.is_empty() => count += 1,
                    _ => {
                        return Err(format!(
                            "the certificate at line {start} is not valid base64"
                        ));
                    }
                }
                block = None;
            }
            Some((_, body)) => body.push_str(line),
        }
    }
    if let Some((start, _)) = block {
        return Err(format!("the certificate at line {start} has no END line"));
    }
    if count == 0 {
        return Err("no -----BEGIN CERTIFICATE----- block".to_owned());
    }
    Ok(count)
}
