//! Takeover and release: the ordered, idempotent, timed steps that move nova-network's
//! network state to this node and take it away again (docs/design.md section 4).
//!
//! Each step is one driver module: [`procs`] (stray dnsmasq/radvd), [`links`] (nova's
//! bridges and VLANs), [`firewall`] (nova's iptables chains), [`addrs`] (VIPs, floating IPs),
//! [`announce`] (GARP / unsolicited NA, and the watcher for addresses nova binds later) and
//! [`nova`] (the nova-network child, which the daemon supervises). Their order is
//! [`steps`]' lists, and nowhere else; [`takeover`] and [`release`] run the network steps of
//! those lists; a step is retried a bounded number of times, is
//! logged with `step` and `ms` fields, and leaves nothing half-applied (iptables in one
//! restore, addresses one by one, each an idempotent kernel call). Everything acts on the
//! calling thread's network namespace. Never decides *when* to run: that is [`crate::cluster`]'s
//! job; never starts nova-network itself.

pub mod addrs;
pub mod announce;
pub mod firewall;
pub mod floating;
pub mod links;
pub(crate) mod netlink;
pub mod nova;
pub mod procs;
pub mod steps;
pub mod survey;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod list_tests {
    #[test]
    fn a_long_list_names_the_first_and_counts_the_rest() {
        assert_eq!(super::list(&[1, 2, 3]), "1 2 3");
        let many: Vec<u32> = (0..25).collect();
        let shown = super::list(&many);
        assert!(
            shown.starts_with("0 1 2 ") && shown.ends_with(" 19 and 5 more"),
            "{shown}"
        );
    }
}

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use ipnet::IpNet;

use crate::config::{Config, Vip};

pub use steps::Step;

/// How moved addresses are announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceSettings {
    /// Rounds per burst (a GARP request and a reply per IPv4 address, an NA per IPv6).
    pub count: u32,
    /// Time between rounds.
    pub interval: Duration,
    /// A second burst this long after the first, for switches that were slow to learn.
    pub repeat_after: Option<Duration>,
}

impl Default for AnnounceSettings {
    fn default() -> Self {
        AnnounceSettings {
            count: 3,
            interval: Duration::ZERO,
            repeat_after: Some(Duration::from_secs(1)),
        }
    }
}

/// How a failing step is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least one is made).
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each further one.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            backoff: Duration::from_millis(20),
        }
    }
}

/// What takeover and release act on, taken from the validated [`Config`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The VIPs (nova's routing_source_ip among them), each with its interface.
    pub vips: Vec<Vip>,
    /// nova's public interface, where floating IPs are bound.
    pub public_interface: String,
    /// Interfaces that may be deleted (nova's bridges and VLANs), once nova marked them as
    /// its own ([`links::NovaLinks`]).
    pub delete_interfaces: Vec<glob::Pattern>,
    /// Bridges nova.conf names (`flat_network_bridge`).
    pub nova_bridges: Vec<String>,
    /// Interfaces never deleted whatever the patterns say: `lo`, the public, flat and VLAN
    /// interfaces, the VIPs' and the heartbeat paths' interfaces.
    pub protected_interfaces: Vec<String>,
    /// Executables that may be stopped (exact paths: dnsmasq, radvd).
    pub stop_executables: Vec<PathBuf>,
    /// nova's networks_path, where the dnsmasq/radvd pid files are.
    pub networks_path: PathBuf,
    /// nova's floating_range, when nova.conf sets it: host addresses inside it on the public
    /// interface are floating IPs, besides those nova's chains DNAT ([`floating`]).
    pub floating_range: Option<IpNet>,
    /// Prefix of nova-network's iptables chains ([`firewall::NOVA_NETWORK_PREFIX`]).
    pub chain_prefix: String,
    /// How addresses are announced.
    pub announce: AnnounceSettings,
    /// How a failing step is retried.
    pub retry: RetryPolicy,
    /// How long a stopped process gets after SIGTERM (then again after SIGKILL).
    pub stop_grace: Duration,
}

impl Plan {
    /// The plan for `config`, with default announce, retry and stop settings.
    pub fn from_config(config: &Config) -> Plan {
        let nova = &config.nova;
        let mut protected: Vec<String> = vec!["lo".into(), nova.public_interface.clone()];
        protected.extend(nova.flat_interface.iter().cloned());
        protected.extend(nova.vlan_interface.iter().cloned());
        protected.extend(config.failover.vips.iter().map(|v| v.interface.clone()));
        protected.extend(
            config
                .paths
                .iter()
                .filter_map(|p| p.kind.interface())
                .map(str::to_owned),
        );
        protected.sort();
        protected.dedup();
        Plan {
            vips: config.failover.vips.clone(),
            public_interface: nova.public_interface.clone(),
            delete_interfaces: config.failover.delete_interfaces.clone(),
            nova_bridges: nova.flat_network_bridge.iter().cloned().collect(),
            protected_interfaces: protected,
            stop_executables: config.failover.stop_processes.clone(),
            networks_path: nova.networks_path.clone(),
            floating_range: nova.floating_range,
            chain_prefix: firewall::NOVA_NETWORK_PREFIX.into(),
            announce: AnnounceSettings::default(),
            retry: RetryPolicy::default(),
            stop_grace: Duration::from_secs(1),
        }
    }

    /// Which links are nova's to delete, as nova marked them now.
    pub fn nova_links(&self) -> links::NovaLinks {
        links::NovaLinks::new(
            &self.delete_interfaces,
            &self.protected_interfaces,
            &self.nova_bridges,
            &self.networks_path,
        )
    }

    /// The VIPs' addresses.
    pub fn vip_addresses(&self) -> Vec<IpAddr> {
        self.vips.iter().map(|v| v.address.addr()).collect()
    }

    /// The interfaces the address watcher announces for: the public interface, the VIPs'
    /// interfaces, and the delete patterns (nova's bridges, whose gateways nova binds).
    pub fn watch_filter(&self) -> announce::InterfaceFilter {
        let mut names = vec![self.public_interface.clone()];
        names.extend(self.vips.iter().map(|v| v.interface.clone()));
        names.sort();
        names.dedup();
        announce::InterfaceFilter {
            names,
            patterns: self.delete_interfaces.clone(),
        }
    }
}

/// One step done: its name, how long it took (all attempts) and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The step (`procs`, `links`, `firewall`, `addrs`, `announce`, `floating`).
    pub step: &'static str,
    /// Wall time, retries included.
    pub duration: Duration,
    /// What it changed, for logs and alerts (`nothing to do` when idempotently skipped).
    pub detail: String,
}

/// What a driver reported, by step.
#[derive(Debug, thiserror::Error)]
pub enum StepFailure {
    /// Stopping processes.
    #[error(transparent)]
    Procs(#[from] procs::Error),
    /// Deleting links.
    #[error(transparent)]
    Links(#[from] links::Error),
    /// Removing iptables chains.
    #[error(transparent)]
    Firewall(#[from] firewall::Error),
    /// Adding or deleting addresses.
    #[error(transparent)]
    Addrs(#[from] addrs::Error),
    /// Announcing addresses.
    #[error(transparent)]
    Announce(#[from] announce::Error),
}

/// A step that still failed after its retries.
#[derive(Debug, thiserror::Error)]
#[error("step {step} failed after {attempts} attempt(s): {source}")]
pub struct StepError {
    /// The step.
    pub step: &'static str,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    #[source]
    pub source: StepFailure,
}

/// What [`takeover`] and [`release`] return: every step report, or those done before the
/// step that failed and its error.
pub type Outcome = Result<Vec<StepReport>, (Vec<StepReport>, StepError)>;

/// Run one step with retries, time and log it.
async fn retried<F, Fut>(
    name: &'static str,
    retry: RetryPolicy,
    mut f: F,
) -> Result<StepReport, StepError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, StepFailure>>,
{
    let started = Instant::now();
    let attempts = retry.attempts.max(1);
    let mut backoff = retry.backoff;
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(detail) => {
                let duration = started.elapsed();
                tracing::info!(step = name, ms = duration.as_millis() as u64, attempt, detail = %detail, "step done");
                return Ok(StepReport {
                    step: name,
                    duration,
                    detail,
                });
            }
            Err(source) if attempt >= attempts => {
                tracing::error!(step = name, ms = started.elapsed().as_millis() as u64, attempt, error = %source, "step failed");
                return Err(StepError {
                    step: name,
                    attempts: attempt,
                    source,
                });
            }
            Err(e) => {
                tracing::warn!(step = name, attempt, error = %e, "step failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
                attempt += 1;
            }
        }
    }
}

/// At most this many items are named in a step's detail (a log line, an alert, `status`).
const LISTED: usize = 20;

/// `items` space-separated, the first [`LISTED`] of them and how many more: a release of
/// 10,000 floating IPs must not write a 200 KB log line.
fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let mut s = items
        .iter()
        .take(LISTED)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    if items.len() > LISTED {
        s.push_str(&format!(" and {} more", items.len() - LISTED));
    }
    s
}

async fn stop_procs(plan: &Plan) -> Result<String, StepFailure> {
    let stopped = procs::stop(&plan.stop_executables, &plan.networks_path, plan.stop_grace).await?;
    if stopped.is_empty() {
        return Ok("nothing to do".into());
    }
    Ok(stopped
        .iter()
        .map(|s| {
            format!(
                "{} {} ({}){}",
                s.exe.display(),
                s.pid,
                s.why,
                if s.killed { " (killed)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", "))
}

async fn delete_links(plan: &Plan) -> Result<String, StepFailure> {
    let deleted = links::Links::open()?
        .delete_novas(&plan.nova_links())
        .await?;
    Ok(if deleted.is_empty() {
        "nothing to do".into()
    } else {
        format!("deleted {}", deleted.join(" "))
    })
}

async fn remove_chains(plan: &Plan) -> Result<String, StepFailure> {
    let removed = firewall::remove_chains(&plan.chain_prefix).await?;
    let mut parts = Vec::new();
    for r in &removed {
        let fam = match r.family {
            firewall::Family::V4 => "ipv4",
            firewall::Family::V6 => "ipv6",
        };
        if let Some(why) = &r.skipped {
            parts.push(format!("{fam} skipped ({why})"));
        } else if !r.chains.is_empty() {
            parts.push(format!(
                "{fam}: {} chains, {} jumps removed",
                r.chains.len(),
                r.jumps
            ));
        }
    }
    Ok(if parts.is_empty() {
        "nothing to do".into()
    } else {
        parts.join("; ")
    })
}

async fn remove_ebtables() -> Result<String, StepFailure> {
    Ok(match firewall::ebtables::remove().await? {
        None => "skipped (ebtables not installed)".to_owned(),
        Some(0) => "nothing to do".to_owned(),
        Some(n) => format!("{n} floating forward rule(s) removed"),
    })
}

async fn add_vips(plan: &Plan) -> Result<String, StepFailure> {
    let a = addrs::Addrs::open()?;
    let mut added = Vec::new();
    for v in &plan.vips {
        if a.add(&v.interface, v.address).await? == addrs::Change::Done {
            added.push(format!("{} dev {}", v.address, v.interface));
        }
    }
    Ok(if added.is_empty() {
        "already present".into()
    } else {
        format!("added {}", added.join(", "))
    })
}

async fn del_vips(plan: &Plan) -> Result<String, StepFailure> {
    let a = addrs::Addrs::open()?;
    let mut deleted = Vec::new();
    for v in &plan.vips {
        if a.del(&v.interface, v.address).await? == addrs::Change::Done {
            deleted.push(format!("{} dev {}", v.address, v.interface));
        }
    }
    Ok(if deleted.is_empty() {
        "nothing to do".into()
    } else {
        format!("deleted {}", deleted.join(", "))
    })
}

async fn del_floating(plan: &Plan) -> Result<String, StepFailure> {
    let a = addrs::Addrs::open()?;
    let current = floating::current(plan).await?;
    // The warm standby's local routes first (all of them: they are ours alone), then the
    // addresses.
    let mut deleted = a.del_local_routes(&plan.public_interface).await?;
    let routed: std::collections::BTreeSet<IpNet> = deleted.iter().copied().collect();
    let addresses: Vec<IpNet> = current.into_iter().map(|(f, _)| f).collect();
    for f in a.del_all(&plan.public_interface, &addresses).await? {
        if !routed.contains(&f) {
            deleted.push(f);
        }
    }
    Ok(if deleted.is_empty() {
        "nothing to do".into()
    } else {
        format!(
            "deleted {} from {}: {}",
            deleted.len(),
            plan.public_interface,
            list(&deleted)
        )
    })
}

async fn announce_vips(plan: &Plan) -> Result<String, StepFailure> {
    let mut ifaces: Vec<&str> = plan.vips.iter().map(|v| v.interface.as_str()).collect();
    ifaces.sort_unstable();
    ifaces.dedup();
    let mut frames = 0;
    for iface in ifaces {
        let addrs: Vec<IpAddr> = plan
            .vips
            .iter()
            .filter(|v| v.interface == iface)
            .map(|v| v.address.addr())
            .collect();
        frames += announce::announce(iface, &addrs, &plan.announce).await?;
    }
    Ok(format!("{frames} frames"))
}

/// Announce again every address the service holds: the VIPs and the floating IPs
/// ([`floating::current`]). Used after a split brain, when
/// the losing node's announcements drew the neighbours away. Returns how many addresses.
pub async fn reannounce(plan: &Plan) -> Result<usize, StepFailure> {
    let mut by_iface: Vec<(String, Vec<IpAddr>)> = Vec::new();
    let mut push = |iface: &str, addr: IpAddr| match by_iface.iter_mut().find(|(i, _)| i == iface) {
        Some((_, addrs)) => addrs.push(addr),
        None => by_iface.push((iface.to_owned(), vec![addr])),
    };
    for v in &plan.vips {
        push(&v.interface, v.address.addr());
    }
    for (f, _) in floating::current(plan).await? {
        push(&plan.public_interface, f.addr());
    }
    let mut count = 0;
    for (iface, addrs) in &by_iface {
        announce::announce(iface, addrs, &plan.announce).await?;
        count += addrs.len();
    }
    Ok(count)
}

/// Runs the network steps of `list` in order (the others are the daemon's or the state
/// machine's); on the first failure, the reports so far with its error.
pub async fn run_all(list: &[Step], plan: &Plan) -> Outcome {
    let mut reports = Vec::new();
    for &step in list {
        match steps::run(step, plan).await {
            None => {}
            Some(Ok(report)) => reports.push(report),
            Some(Err(e)) => return Err((reports, e)),
        }
    }
    Ok(reports)
}

/// Take nova-network's network state over: the network steps of [`steps::TAKEOVER`]
/// (`procs` stray dnsmasq/radvd, `links` leftover bridges/VLANs, `firewall` nova's chains,
/// `addrs` the VIPs, `announce` GARP/NA for them). The mirror, nova-network and the address
/// [`announce::Watcher`] are the caller's. Running it twice is harmless (each step reports
/// `nothing to do` / `already present`).
pub async fn takeover(plan: &Plan) -> Outcome {
    run_all(steps::TAKEOVER, plan).await
}

/// The clean slate at start-up ([`steps::CLEAN_SLATE`]): `procs`, `floating` (while nova's
/// chains still say which addresses are floating IPs), `vips`, `links`, `firewall`. Running
/// it twice is harmless.
pub async fn release(plan: &Plan) -> Outcome {
    run_all(steps::CLEAN_SLATE, plan).await
}

/// The first half of a release ([`steps::RELEASE_ADDRESSES`], after the caller stopped
/// nova-network), what a peer must wait for before it takes over: `procs` stop
/// dnsmasq/radvd, `floating` delete the floating IPs, `vips` delete the VIPs, `gateways`
/// delete the addresses of nova's bridges. No address of the service is left here
/// afterwards; the bridges and chains left behind carry no traffic and go with
/// [`release_tidy`]. A few milliseconds, where deleting a bridge alone takes tens.
pub async fn release_addresses(plan: &Plan) -> Outcome {
    run_all(steps::RELEASE_ADDRESSES, plan).await
}

/// The second half of a release ([`steps::RELEASE_TIDY`]): `links` delete bridges/VLANs,
/// `firewall` remove nova's chains. Must finish before this node takes over again.
pub async fn release_tidy(plan: &Plan) -> Outcome {
    run_all(steps::RELEASE_TIDY, plan).await
}

/// Delete every address of nova's bridges and VLANs (the gateways, and the link-local router
/// address nova's radvd advertises).
async fn del_gateways(plan: &Plan) -> Result<String, StepFailure> {
    let links = links::Links::open()?.list().await?;
    let nova = plan.nova_links();
    let a = addrs::Addrs::open()?;
    let mut deleted = Vec::new();
    for l in links
        .iter()
        .filter(|l| matches!(nova.verdict(l, &links), links::Verdict::Nova(_)))
    {
        // The link-local ones too: the router address the VMs use, which the peer takes
        // over now; the bridge goes with the tidy-up anyway.
        for addr in a.list(&l.name).await? {
            if a.del(&l.name, addr).await? == addrs::Change::Done {
                deleted.push(format!("{addr} dev {}", l.name));
            }
        }
    }
    Ok(if deleted.is_empty() {
        "nothing to do".into()
    } else {
        format!("deleted {}", deleted.join(", "))
    })
}
