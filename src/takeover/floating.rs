//! Which addresses on the public interface are nova's floating IPs: every one nova bound,
//! from every pool, whether or not nova.conf sets `floating_range` (it names one range at
//! most, and `nova-manage floating create --ip_range` adds others without it).
//!
//! nova binds a floating IP as a host address (`/32`) on public_interface and DNATs it in its
//! nat chains (`ensure_floating_forward`), so the evidence is read from what nova set up: a
//! host address of the public interface that nova-network's chains DNAT is a floating IP; so
//! is one inside `floating_range` when it is set (a half-bound address nova left behind). A
//! VIP never is, nor the server's own subnet address.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{Plan, StepFailure, addrs, firewall};

/// Why an address is taken for a floating IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// nova-network's nat chains DNAT it.
    Dnat,
    /// It is inside nova.conf's floating_range (and no chain DNATs it).
    Range,
}

/// The floating IPs among `on_public` (the public interface's addresses): host addresses
/// that `dnat` (nova's DNAT destinations) names or `range` holds, never one of `vips`, each
/// with its evidence, in the interface's order.
pub fn select(
    on_public: &[IpNet],
    dnat: &BTreeSet<IpAddr>,
    range: Option<IpNet>,
    vips: &[IpAddr],
) -> Vec<(IpNet, Evidence)> {
    on_public
        .iter()
        .filter(|a| a.prefix_len() == a.max_prefix_len() && !vips.contains(&a.addr()))
        .filter_map(|a| {
            if dnat.contains(&a.addr()) {
                Some((*a, Evidence::Dnat))
            } else if range.is_some_and(|r| r.contains(&a.addr())) {
                Some((*a, Evidence::Range))
            } else {
                None
            }
        })
        .collect()
}

/// The DNAT destinations of nova-network's IPv4 nat chains on this server now.
pub async fn dnat_now(plan: &Plan) -> Result<BTreeSet<IpAddr>, firewall::Error> {
    Ok(firewall::save(firewall::Family::V4)
        .await?
        .map(|save| firewall::dnat_destinations(&save, &plan.chain_prefix))
        .unwrap_or_default())
}

/// What answers as local on the public interface: its addresses, and the addresses the
/// warm standby's local routes bind before nova-network does
/// ([`addrs::Addrs::add_local_routes`]).
pub async fn on_public(a: &addrs::Addrs, plan: &Plan) -> Result<Vec<IpNet>, addrs::Error> {
    let mut all = a.list(&plan.public_interface).await?;
    for r in a.local_routes(&plan.public_interface).await? {
        if !all.contains(&r) {
            all.push(r);
        }
    }
    Ok(all)
}

/// nova's floating IPs on this server now (see [`select`]).
pub async fn current(plan: &Plan) -> Result<Vec<(IpNet, Evidence)>, StepFailure> {
    let dnat = dnat_now(plan).await?;
    let a = addrs::Addrs::open()?;
    Ok(select(
        &on_public(&a, plan).await?,
        &dnat,
        plan.floating_range,
        &plan.vip_addresses(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn every_pool_nova_dnats_and_the_range_but_never_a_vip_or_the_subnet_address() {
        let on_public = [
            net("10.2.3.11/24"),  // the server's own
            net("10.2.3.120/32"), // the VIP
            net("10.2.3.104/32"), // floating_range
            net("10.2.9.7/32"),   // another pool, DNATed
            net("10.2.3.106/32"), // floating_range, no DNAT (half-bound)
            net("192.0.2.5/32"),  // someone else's, neither
        ];
        let dnat: BTreeSet<IpAddr> = ["10.2.3.104", "10.2.9.7", "10.2.3.11", "10.2.3.120"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let vips = ["10.2.3.120".parse().unwrap()];
        let got = select(&on_public, &dnat, Some(net("10.2.3.104/29")), &vips);
        assert_eq!(
            got,
            vec![
                (net("10.2.3.104/32"), Evidence::Dnat),
                (net("10.2.9.7/32"), Evidence::Dnat),
                (net("10.2.3.106/32"), Evidence::Range),
            ]
        );
        // floating_range unset: what nova DNATs alone.
        let got = select(&on_public, &dnat, None, &vips);
        assert_eq!(got.len(), 2);
        assert!(select(&on_public, &BTreeSet::new(), None, &vips).is_empty());
    }
}
