//! The AMQP connection: the URL with its password put in, AMQP heartbeats, a bounded connect,
//! and the reconnect backoff.
//!
//! Owns how we reach the broker. Never declares, publishes or consumes anything, and never
//! logs or formats a password (URLs are shown through [`redact_url`]).

use std::time::Duration;

use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::FieldTable;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use rand::Rng;

use super::BusSettings;

/// AMQP heartbeat interval negotiated with the broker, in seconds.
pub const AMQP_HEARTBEAT_S: u16 = 10;

/// The bound on one connection attempt (TCP, TLS and the AMQP handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// First reconnect delay; doubled per failed attempt.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker URL does not parse (shown without its password).
    #[error("bad broker url {url}: {reason}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// The connection could not be made.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// lapin's error.
        source: lapin::Error,
    },
    /// The connection attempt took longer than its bound.
    #[error("connecting to {url} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The URL, password redacted.
        url: String,
        /// The bound.
        timeout: Duration,
    },
    /// A channel could not be opened or used.
    #[error("channel error: {0}")]
    Channel(lapin::Error),
    /// An exchange or queue declaration was refused.
    #[error("cannot declare {name}: {source}")]
    Declare {
        /// The exchange or queue.
        name: String,
        /// lapin's error.
        source: lapin::Error,
    },
    /// A queue could not be bound.
    #[error("cannot bind with key {binding}: {source}")]
    Bind {
        /// The binding key.
        binding: String,
        /// lapin's error.
        source: lapin::Error,
    },
    /// The connection was lost.
    #[error("connection lost: {0}")]
    Lost(String),
}

/// The URL with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The parsed URL with the password put in, AMQP heartbeats on and the TCP connect bounded.
///
/// An empty vhost (`amqp://host:5672/`) means the default vhost `/`, as in nova's
/// `transport_url`; write `%2f` or a name for another.
pub fn uri(settings: &BusSettings) -> Result<AMQPUri, BusError> {
    let mut uri: AMQPUri = settings.url.parse().map_err(|e: String| BusError::Url {
        url: redact_url(&settings.url),
        reason: e,
    })?;
    if let Some(password) = &settings.password {
        uri.authority.userinfo.password = password.clone();
    }
    // lapin reads `amqp://host/` as the empty vhost; nova's transport_url and the lab mean
    // the default vhost `/` by it, and nobody uses an empty vhost.
    if uri.vhost.is_empty() {
        uri.vhost = "/".to_owned();
    }
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(AMQP_HEARTBEAT_S);
    }
    if uri.query.connection_timeout.is_none() {
        uri.query.connection_timeout = Some(CONNECT_TIMEOUT.as_millis() as u64);
    }
    Ok(uri)
}

/// Whether the URL asks for TLS (`amqps://`).
pub fn is_tls(uri: &AMQPUri) -> bool {
    matches!(uri.scheme, AMQPScheme::AMQPS)
}

/// One connection attempt, bounded by [`CONNECT_TIMEOUT`]; TLS when the URL is `amqps://`,
/// verifying the broker's certificate against the system's CAs and `ca_pem`.
pub async fn connect(settings: &BusSettings) -> Result<Connection, BusError> {
    let uri = uri(settings)?;
    let url = redact_url(&settings.url);
    let props = ConnectionProperties::default().with_connection_name(
        format!("nova-network-ha {}/{}", settings.cluster, settings.node).into(),
    );
    let tls = OwnedTLSConfig {
        identity: None,
        cert_chain: settings.ca_pem.clone(),
    };
    let runtime = lapin::runtime::default_runtime().map_err(|source| BusError::Connect {
        url: url.clone(),
        source,
    })?;
    let attempt = Connection::connect_uri_with_config(uri, props, tls, runtime);
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) => Err(BusError::Connect { url, source }),
        Err(_) => Err(BusError::ConnectTimeout {
            url,
            timeout: CONNECT_TIMEOUT,
        }),
    }
}

/// Capped exponential backoff with jitter: 100 ms doubling to 5 s, each delay drawn in
/// [d/2, d] so that many nodes do not reconnect in step.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The delay before the next attempt (grows the one after).
    pub fn delay(&mut self, rng: &mut impl Rng) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let half = d / 2;
        half + half.mul_f64(rng.r#gen::<f64>())
    }

    /// A connection was made: start again from the shortest delay.
    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// Consume from an exclusive, auto-delete, server-named queue bound to `exchange` with
/// `binding` (no acks: what arrives is only ever looked at). `what` names the queue in errors.
pub(crate) async fn subscribe_private(
    channel: &Channel,
    exchange: &str,
    binding: &str,
    what: &str,
) -> Result<Consumer, BusError> {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| BusError::Declare {
            name: format!("(server-named {what} queue)"),
            source: e,
        })?;
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.into(),
            binding.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| BusError::Bind {
            binding: format!("{binding} ({} -> {exchange})", queue.name()),
            source: e,
        })?;
    channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(BusError::Channel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn settings(url: &str, password: Option<&str>) -> BusSettings {
        let mut s = BusSettings::new(url, "c1", "net1", "network.net1");
        s.password = password.map(str::to_owned);
        s
    }

    #[test]
    fn password_goes_into_the_uri_not_the_logs() {
        let s = settings("amqp://nova@10.9.0.10:5672/", Some("s3cret"));
        let u = uri(&s).unwrap();
        assert_eq!(u.authority.userinfo.username, "nova");
        assert_eq!(u.authority.userinfo.password, "s3cret");
        assert_eq!(u.query.heartbeat, Some(AMQP_HEARTBEAT_S));
        assert_eq!(u.vhost, "/");
        assert!(!is_tls(&u));
        assert!(!format!("{s:?}").contains("s3cret"), "{s:?}");
        let t = settings("amqps://nova:inline@broker:5671/%2f", None);
        assert!(is_tls(&uri(&t).unwrap()));
        assert!(!format!("{t:?}").contains("inline"), "{t:?}");
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("amqp://nova:nova@10.9.0.10:5672/"),
            "amqp://nova:***@10.9.0.10:5672/"
        );
        assert_eq!(redact_url("amqp://nova@h/"), "amqp://nova@h/");
        assert_eq!(redact_url("amqp://h:5672"), "amqp://h:5672");
        assert_eq!(redact_url("amqp://u:p@ss@h/v"), "amqp://u:***@h/v");
    }

    #[test]
    fn bad_url_is_named_without_its_password() {
        let e = uri(&settings("http://u:pw@h/", None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("http://u:***@h/"), "{e}");
        assert!(!e.contains("pw@"), "{e}");
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = Backoff::default();
        let mut ceiling = BACKOFF_MIN;
        for _ in 0..12 {
            let d = b.delay(&mut rng);
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} vs {ceiling:?}");
            ceiling = (ceiling * 2).min(BACKOFF_MAX);
        }
        b.reset();
        assert!(b.delay(&mut rng) <= BACKOFF_MIN);
    }
}
