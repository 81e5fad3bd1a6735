//! The one ordered list of takeover and release steps (docs/design.md section 4).
//!
//! The daemon's transition runner walks these lists to do the work, and `check-config` walks
//! the same lists to print what the work will be: the order is written here and nowhere
//! else. A step is carried out by one of three hands ([`Doer`]): the state machine (decisions
//! such as the fence check), the network drivers of this module's parent (run by [`run`]), or
//! the daemon (the mirror and the nova-network child, which need what only it holds).

use crate::config::{Config, duration::format as dur};

use super::{Plan, StepError, StepReport, retried};

/// One step of a takeover or a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Every peer has released, or is silent on every path for deadtime.
    Fence,
    /// Stop nova's stray dnsmasq/radvd (by exact executable, in this namespace, nova's alone).
    Procs,
    /// Delete nova's bridges and VLANs (a pattern matches, and nova marked them).
    Links,
    /// Remove nova-network's iptables chains and the jumps to them.
    Firewall,
    /// Remove nova's ebtables floating forward rules (not in a takeover: a leftover rule there
    /// routes a VM's traffic through this server, which is about to be right, and it costs a
    /// tool run on the way to the VMs' first answer).
    Ebtables,
    /// Add the VIPs.
    AddVips,
    /// Gratuitous ARP / unsolicited NA for the VIPs.
    Announce,
    /// Apply the warm standby's snapshot, when one may be used.
    Mirror,
    /// Start nova-network with the shared host.
    StartNova,
    /// While active, announce every address nova binds later.
    Watch,
    /// Active once nova-network runs; with a bus, it must then consume.
    Consume,
    /// Stop nova-network (SIGTERM, then SIGKILL).
    StopNova,
    /// Delete the floating IPs.
    Floating,
    /// Delete the VIPs.
    DelVips,
    /// Delete the addresses of nova's bridges (the gateways).
    Gateways,
}

/// Who carries a step out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doer {
    /// Decided by [`crate::cluster::Node`]; nothing to run.
    StateMachine,
    /// A network driver, run by [`run`].
    Network,
    /// The daemon (it holds the mirror's snapshot and the nova-network child).
    Daemon,
}

/// Takeover, in the seed's order.
pub const TAKEOVER: &[Step] = &[
    Step::Fence,
    Step::Procs,
    Step::Links,
    Step::Firewall,
    Step::AddVips,
    Step::Announce,
    Step::Mirror,
    Step::StartNova,
    Step::Watch,
    Step::Consume,
];

/// The first half of a release: afterwards no address of the service is left here, and the
/// peer is told at once.
pub const RELEASE_ADDRESSES: &[Step] = &[
    Step::StopNova,
    Step::Procs,
    Step::Floating,
    Step::DelVips,
    Step::Gateways,
];

/// The second half of a release, after the peer was told: what carries no traffic any more.
/// It finishes before this node may take over again.
pub const RELEASE_TIDY: &[Step] = &[Step::Links, Step::Firewall, Step::Ebtables];

/// At start-up, before joining the pool: a clean slate of whatever a previous run left.
pub const CLEAN_SLATE: &[Step] = &[
    Step::Procs,
    Step::Floating,
    Step::DelVips,
    Step::Links,
    Step::Firewall,
    Step::Ebtables,
];

impl Step {
    /// The step's name in logs, alerts and `status`.
    pub fn name(self) -> &'static str {
        match self {
            Step::Fence => "fence",
            Step::Procs => "procs",
            Step::Links => "links",
            Step::Firewall => "firewall",
            Step::Ebtables => "ebtables",
            Step::AddVips => "addrs",
            Step::Announce => "announce",
            Step::Mirror => "mirror",
            Step::StartNova | Step::StopNova => "nova",
            Step::Watch => "watch",
            Step::Consume => "active",
            Step::Floating => "floating",
            Step::DelVips => "vips",
            Step::Gateways => "gateways",
        }
    }

    /// Who carries it out.
    pub fn doer(self) -> Doer {
        match self {
            Step::Fence | Step::Consume => Doer::StateMachine,
            Step::Mirror | Step::StartNova | Step::StopNova | Step::Watch => Doer::Daemon,
            Step::Procs
            | Step::Links
            | Step::Firewall
            | Step::Ebtables
            | Step::AddVips
            | Step::Announce
            | Step::Floating
            | Step::DelVips
            | Step::Gateways => Doer::Network,
        }
    }

    /// What the step does on this node with this configuration, for `check-config`.
    pub fn describe(self, c: &Config) -> String {
        let f = &c.failover;
        let n = &c.nova;
        let patterns = list(f.delete_interfaces.iter().map(|p| p.as_str().to_owned()));
        let vips = list(
            f.vips
                .iter()
                .map(|v| format!("{} on {}", v.address, v.interface)),
        );
        match self {
            Step::Fence => format!(
                "fence check: every peer has released, or is silent on every path for deadtime ({}) (no fence command configured)",
                dur(c.timers.deadtime)
            ),
            Step::Procs => format!(
                "stop nova's stray processes ({}) in this namespace: those named in nova's pid files under {} (nova-*.pid) or whose command line names a nova-* file there; any other (libvirt's dnsmasq, a site's own) is left alone",
                list(f.stop_processes.iter().map(|p| p.display().to_string())),
                n.networks_path.display()
            ),
            Step::Links => format!(
                "delete nova's leftover bridges and VLANs: links matching {patterns} that nova marked as its own ({}a nova-BRIDGE.conf or nova-ra-BRIDGE.conf under {}, or a VLAN port of such a bridge); other matching links are left alone",
                n.flat_network_bridge
                    .as_ref()
                    .map(|b| format!("flat_network_bridge {b}, "))
                    .unwrap_or_default(),
                n.networks_path.display()
            ),
            Step::Firewall => "remove nova-network's netfilter state: its iptables chains (nova-network-*) and the jumps to them, nova-filter-top and nova-postrouting-bottom only when no other nova binary (nova-compute, nova-api) uses them; every other chain and rule is left alone".to_owned(),
            Step::Ebtables => "remove nova's ebtables floating forward rules (nat PREROUTING, one --ip-src, a negated --ip-dst, -j redirect); every other bridge rule is left alone".to_owned(),
            Step::AddVips => format!("add VIPs: {vips}"),
            Step::Announce => format!(
                "gratuitous ARP / unsolicited NA for: {}",
                list(
                    f.vips
                        .iter()
                        .map(|v| format!("{} on {}", v.address.addr(), v.interface))
                )
            ),
            Step::Mirror => match &c.mirror {
                Some(m) => format!(
                    "apply the mirror of nova's state held from the active (bridges and gateways, nova's chains, floating IPs, dnsmasq files) and announce it, if it is fresh (under {:?}) and its sender no longer holds the service; else skipped",
                    m.max_age
                ),
                None => "mirror: off, skipped (the VMs wait for nova-network's start-up)".to_owned(),
            },
            Step::StartNova => format!(
                "start nova-network: {}",
                c.nova_network_command()
                    .iter()
                    .map(|a| shell_word(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Step::Watch => format!(
                "while active, announce every address appearing on {} or an interface matching {patterns}",
                n.public_interface
            ),
            Step::Consume => format!(
                "become Active once nova-network runs; {}",
                match &c.bus {
                    Some(b) => format!(
                        "then it must consume network.{} within {:?} and keep its backlog draining, else release and report a fault",
                        n.host, b.consumer_grace
                    ),
                    None => "no bus configured: its queue is not watched".to_owned(),
                }
            ),
            Step::StopNova => "stop nova-network (SIGTERM, then SIGKILL)".to_owned(),
            Step::Floating => format!(
                "delete floating IPs: host addresses on {} that nova-network's nat chains DNAT (every pool){}; never a VIP",
                n.public_interface,
                n.floating_range
                    .map(|r| format!(", and those inside floating_range {r}"))
                    .unwrap_or_default()
            ),
            Step::DelVips => format!("delete VIPs: {vips}"),
            Step::Gateways => format!(
                "delete the addresses of nova's bridges and VLANs (those the links step deletes, matching {patterns}): nova's gateways"
            ),
        }
    }
}

/// Runs one network step with its retries, timed and logged; `None` for a step that is not
/// the network drivers' (the caller does those).
pub async fn run(step: Step, plan: &Plan) -> Option<Result<StepReport, StepError>> {
    let name = step.name();
    let r = plan.retry;
    Some(match step {
        Step::Procs => retried(name, r, || super::stop_procs(plan)).await,
        Step::Links => retried(name, r, || super::delete_links(plan)).await,
        Step::Firewall => retried(name, r, || super::remove_chains(plan)).await,
        Step::Ebtables => retried(name, r, super::remove_ebtables).await,
        Step::AddVips => retried(name, r, || super::add_vips(plan)).await,
        Step::Announce => retried(name, r, || super::announce_vips(plan)).await,
        Step::Floating => retried(name, r, || super::del_floating(plan)).await,
        Step::DelVips => retried(name, r, || super::del_vips(plan)).await,
        Step::Gateways => retried(name, r, || super::del_gateways(plan)).await,
        Step::Fence
        | Step::Mirror
        | Step::StartNova
        | Step::Watch
        | Step::Consume
        | Step::StopNova => return None,
    })
}

/// The takeover and release lists as `check-config` prints them, numbered in order.
pub fn render(c: &Config) -> String {
    let mut s = String::from("takeover, in order:\n");
    numbered(&mut s, TAKEOVER, 1, c);
    s.push_str("release, in order:\n");
    numbered(&mut s, RELEASE_ADDRESSES, 1, c);
    s.push_str("  then the peer is told (it may take over now), and:\n");
    numbered(&mut s, RELEASE_TIDY, RELEASE_ADDRESSES.len() + 1, c);
    s.push_str("at start-up, before joining (a clean slate):\n");
    numbered(&mut s, CLEAN_SLATE, 1, c);
    s
}

fn numbered(s: &mut String, steps: &[Step], first: usize, c: &Config) {
    for (i, step) in steps.iter().enumerate() {
        s.push_str(&format!("  {}. {}\n", first + i, step.describe(c)));
    }
}

fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

/// A word as a shell would read it back (quoted only when needed).
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
