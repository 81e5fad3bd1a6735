//! nova-network's ebtables rules: the one `ensure_floating_forward` adds for each floating IP
//! (`-t nat -I PREROUTING [--logical-in BRIDGE] -p ipv4 --ip-src FIXED ! --ip-dst FIXED_CIDR
//! -j redirect --redirect-target ACCEPT`), so that a VM's traffic leaving its network is
//! routed by this server rather than bridged. nova removes it on disassociation only; a
//! release that stops nova-network would leave it behind, and a mirror without it would
//! differ from what nova set up.
//!
//! A rule is nova-network's when it has that shape: the nat table's PREROUTING chain, a
//! single source address, a negated destination network and the `redirect` target. Every
//! other bridge rule (libvirt's, a site's) is left alone. Scripts are pure; the tools run in
//! one `ebtables-restore --noflush` each, skipped when ebtables is not installed.

use super::{Error, run};

/// The ebtables chain nova's floating forward rule lives in (table `nat`).
const CHAIN: &str = "PREROUTING";

/// nova-network's rules in `save` (an `ebtables-save` dump), as the specs after
/// `-A PREROUTING ` in the nat table, in order.
pub fn nova_rules(save: &str) -> Vec<String> {
    let mut in_nat = false;
    let mut out = Vec::new();
    for line in save.lines().map(str::trim) {
        if let Some(table) = line.strip_prefix('*') {
            in_nat = table == "nat";
        } else if in_nat
            && let Some(rule) = line.strip_prefix("-A ")
            && let Some((CHAIN, spec)) = rule.split_once(' ')
            && is_floating_forward(spec)
        {
            out.push(spec.trim().to_owned());
        }
    }
    out
}

/// Whether `spec` is nova's floating forward rule: `--ip-src` one address, `--ip-dst`
/// negated (`! --ip-dst NET` or, as ebtables-save prints it, `--ip-dst ! NET`), `-j
/// redirect`.
fn is_floating_forward(spec: &str) -> bool {
    let w: Vec<&str> = spec.split_whitespace().collect();
    let after = |flag: &str| w.iter().position(|x| *x == flag).map(|i| i + 1);
    let source_is_one_address = after("--ip-src")
        .and_then(|i| w.get(i))
        .is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok() || a.ends_with("/32"));
    let destination_negated = after("--ip-dst")
        .is_some_and(|i| w.get(i) == Some(&"!") || (i >= 2 && w.get(i - 2) == Some(&"!")));
    let redirect = after("-j").and_then(|i| w.get(i)) == Some(&"redirect");
    source_is_one_address && destination_negated && redirect
}

/// The `ebtables-restore --noflush` input deleting nova-network's rules of `save`, and how
/// many; `None` when there are none.
pub fn removal_script(save: &str) -> Option<(String, usize)> {
    let rules = nova_rules(save);
    if rules.is_empty() {
        return None;
    }
    let mut script = String::from("*nat\n");
    for r in &rules {
        script.push_str(&format!("-D {CHAIN} {r}\n"));
    }
    script.push_str("COMMIT\n");
    Some((script, rules.len()))
}

/// The `ebtables-restore --noflush` input adding those of `rules` (nova-network's, from
/// another server) that `save` (this server's dump) lacks, first in the chain as nova inserts
/// them; `None` when none is missing.
pub fn restore_script(rules: &[String], save: &str) -> Option<String> {
    let here = nova_rules(save);
    let missing: Vec<&String> = rules.iter().filter(|r| !here.contains(r)).collect();
    if missing.is_empty() {
        return None;
    }
    let mut script = String::from("*nat\n");
    for r in missing.iter().rev() {
        script.push_str(&format!("-I {CHAIN} 1 {r}\n"));
    }
    script.push_str("COMMIT\n");
    Some(script)
}

/// `ebtables-save`, or `None` when ebtables is not installed.
pub async fn save() -> Result<Option<String>, Error> {
    match run("ebtables-save", &[], None).await {
        Ok(s) => Ok(Some(s)),
        Err(Error::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Delete nova-network's rules: how many, or `None` when ebtables is not installed.
pub async fn remove() -> Result<Option<usize>, Error> {
    let Some(save) = save().await? else {
        return Ok(None);
    };
    let Some((script, count)) = removal_script(&save) else {
        return Ok(Some(0));
    };
    run("ebtables-restore", &["--noflush"], Some(&script)).await?;
    Ok(Some(count))
}

/// Add those of `rules` this server lacks: how many were missing (0 when ebtables is not
/// installed and there is nothing to add).
pub async fn restore(rules: &[String]) -> Result<usize, Error> {
    if rules.is_empty() {
        return Ok(0);
    }
    let here = save().await?.unwrap_or_default();
    let Some(script) = restore_script(rules, &here) else {
        return Ok(0);
    };
    run("ebtables-restore", &["--noflush"], Some(&script)).await?;
    Ok(script.lines().filter(|l| l.starts_with("-I")).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ebtables-nft 1.8.9's dump after nova bound two floating IPs, beside libvirt-like rules.
    const SAVE: &str = "\
# Generated by ebtables-save v1.8.9 (nf_tables) on Wed Dec  2 05:12:07 2026
*filter
:INPUT ACCEPT
-A INPUT -p IPv4 --ip-src 10.0.0.3 --ip-dst ! 10.0.0.0/24 -j redirect 
*nat
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
-A PREROUTING -p IPv4 --ip-src 10.0.0.3 --ip-dst ! 10.0.0.0/24 -j redirect 
-A PREROUTING -p IPv4 --logical-in br101 --ip-src 10.0.1.3 ! --ip-dst 10.0.1.0/24 -j redirect --redirect-target ACCEPT
-A PREROUTING -p IPv4 --ip-src 192.168.122.0/24 --ip-dst ! 10.0.0.0/24 -j redirect 
-A PREROUTING -p IPv4 --ip-src 10.0.0.9 -j ACCEPT
-A POSTROUTING -p IPv4 --ip-src 10.0.0.3 --ip-dst ! 10.0.0.0/24 -j redirect 
";

    #[test]
    fn only_novas_floating_forward_rules_are_novas() {
        assert_eq!(
            nova_rules(SAVE),
            vec![
                "-p IPv4 --ip-src 10.0.0.3 --ip-dst ! 10.0.0.0/24 -j redirect".to_owned(),
                "-p IPv4 --logical-in br101 --ip-src 10.0.1.3 ! --ip-dst 10.0.1.0/24 -j redirect --redirect-target ACCEPT".to_owned(),
            ]
        );
        assert!(nova_rules("").is_empty());
    }

    #[test]
    fn removal_deletes_each_rule_once() {
        let (script, count) = removal_script(SAVE).unwrap();
        assert_eq!(count, 2);
        assert_eq!(
            script,
            "*nat\n-D PREROUTING -p IPv4 --ip-src 10.0.0.3 --ip-dst ! 10.0.0.0/24 -j redirect\n\
             -D PREROUTING -p IPv4 --logical-in br101 --ip-src 10.0.1.3 ! --ip-dst 10.0.1.0/24 -j redirect --redirect-target ACCEPT\nCOMMIT\n"
        );
        assert!(removal_script("*nat\n:PREROUTING ACCEPT\n").is_none());
    }

    #[test]
    fn restore_adds_only_the_missing_in_order() {
        let rules = nova_rules(SAVE);
        assert!(restore_script(&rules, SAVE).is_none());
        let script = restore_script(&rules, "*nat\n:PREROUTING ACCEPT\n").unwrap();
        assert_eq!(
            script,
            format!(
                "*nat\n-I PREROUTING 1 {}\n-I PREROUTING 1 {}\nCOMMIT\n",
                rules[1], rules[0]
            )
        );
    }
}
