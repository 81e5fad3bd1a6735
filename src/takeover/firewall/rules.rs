//! Which iptables rules are nova-network's, and the scripts that remove, copy and re-create
//! them. Pure functions of `iptables-save` text; the tools are run by the parent module.
//!
//! nova's `IptablesManager` gives every binary on a server its own wrapped chains
//! (`nova-network-*`, `nova-compute-*`, `nova-api-*`) and hangs them all off two shared,
//! unwrapped chains: `nova-filter-top` (filter, jumped to from FORWARD and OUTPUT) and
//! `nova-postrouting-bottom` (nat, from POSTROUTING). nova-network's part is its own wrapped
//! chains, the rules of other chains that jump to them, and a shared chain only while nothing
//! but nova-network's jumps is in it. Everything else, nova-compute's chains above all, is
//! left as it was.

use std::collections::BTreeSet;

/// The unwrapped chains every nova binary on a server shares.
pub const SHARED_CHAINS: [&str; 2] = ["nova-filter-top", "nova-postrouting-bottom"];

/// The `iptables-restore --noflush` input that removes nova-network's part of `save` (an
/// `iptables-save` dump), table by table: every chain named `prefix*`, every rule of another
/// chain that jumps (`-j`) or goes (`-g`) to one, and each shared chain left empty by that,
/// with the jumps to it. Jumps are deleted first, then the chains flushed, then deleted, then
/// `COMMIT`. `None` when there is nothing to remove. Also returns the chains (`table/chain`)
/// and the count of jumps it removes.
pub fn removal_script(save: &str, prefix: &str) -> Option<(String, Vec<String>, usize)> {
    let mut script = String::new();
    let mut all_chains = Vec::new();
    let mut all_jumps = 0;
    for table in parse(save) {
        let ours = table.chains_with(prefix);
        // A shared chain goes too when every rule in it is a jump to ours (or it has none).
        let emptied = table.chains.iter().map(String::as_str).filter(|c| {
            SHARED_CHAINS.contains(c)
                && table
                    .rules_of(c)
                    .all(|spec| target(spec).is_some_and(|t| ours.contains(t.as_str())))
        });
        let doomed: BTreeSet<&str> = ours.iter().copied().chain(emptied).collect();
        if doomed.is_empty() {
            continue;
        }
        script.push_str(&format!("*{}\n", table.name));
        for (chain, spec) in &table.rules {
            if doomed.contains(chain.as_str()) {
                continue;
            }
            if target(spec).is_some_and(|t| doomed.contains(t.as_str())) {
                script.push_str(&format!("-D {chain} {spec}\n"));
                all_jumps += 1;
            }
        }
        for c in &doomed {
            script.push_str(&format!("-F {c}\n"));
        }
        for c in &doomed {
            script.push_str(&format!("-X {c}\n"));
            all_chains.push(format!("{}/{c}", table.name));
        }
        script.push_str("COMMIT\n");
    }
    if all_chains.is_empty() {
        None
    } else {
        Some((script, all_chains, all_jumps))
    }
}

/// nova-network's part of `save` (an `iptables-save` dump), as `iptables-restore --noflush`
/// input that re-creates it on another server ([`fit`] it to that server's rules first):
/// per table, every `prefix*` chain with its rules in order; each shared chain that jumps to
/// one, with those jumps only (the other binaries' rules in it are theirs); and the rules of
/// other chains that jump to any of these. A jump that came before every other rule of its
/// chain (nova's `-I` jumps to `nova-filter-top`) is inserted at the same position; later ones
/// are appended. Empty when `save` has no `prefix*` chain.
pub fn nova_part(save: &str, prefix: &str) -> String {
    let mut script = String::new();
    for table in parse(save) {
        let ours = table.chains_with(prefix);
        if ours.is_empty() {
            continue;
        }
        let jumps_to_ours = |spec: &str| target(spec).is_some_and(|t| ours.contains(t.as_str()));
        let shared: BTreeSet<&str> = table
            .chains
            .iter()
            .map(String::as_str)
            .filter(|c| SHARED_CHAINS.contains(c) && table.rules_of(c).any(jumps_to_ours))
            .collect();
        let copied: BTreeSet<&str> = ours.union(&shared).copied().collect();
        script.push_str(&format!("*{}\n", table.name));
        for c in &copied {
            script.push_str(&format!(":{c} - [0:0]\n"));
        }
        // Position of the next rule in each other chain, and whether only jumps to copied
        // chains came before it.
        let mut seen: Vec<(&str, usize, bool)> = Vec::new();
        for (chain, spec) in &table.rules {
            if ours.contains(chain.as_str()) {
                script.push_str(&format!("-A {chain} {spec}\n"));
                continue;
            }
            if shared.contains(chain.as_str()) {
                if jumps_to_ours(spec) {
                    script.push_str(&format!("-A {chain} {spec}\n"));
                }
                continue;
            }
            let jump = target(spec).is_some_and(|t| copied.contains(t.as_str()));
            let entry = match seen.iter_mut().find(|(c, _, _)| c == chain) {
                Some(e) => e,
                None => {
                    seen.push((chain.as_str(), 0, true));
                    let last = seen.len() - 1;
                    &mut seen[last]
                }
            };
            if jump {
                entry.1 += 1;
                if entry.2 {
                    script.push_str(&format!("-I {chain} {} {spec}\n", entry.1));
                } else {
                    script.push_str(&format!("-A {chain} {spec}\n"));
                }
            } else {
                entry.2 = false;
            }
        }
        script.push_str("COMMIT\n");
    }
    script
}

/// `part` (a [`nova_part`] from another server) made safe to restore here, where `save` is
/// this server's dump: a chain that is not `prefix*` and already exists here is not declared
/// again (`iptables-restore --noflush` would flush it, and with it nova-compute's jumps in
/// `nova-filter-top`); a rule of such a chain that is already here is not added twice; an
/// insert position past the end of its chain becomes the end.
pub fn fit(part: &str, save: &str, prefix: &str) -> String {
    let here = parse(save);
    let mut out = String::new();
    let mut table: Option<&Table> = None;
    // Rules added so far to each chain of the current table.
    let mut added: Vec<(String, usize)> = Vec::new();
    for line in part.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = here.iter().find(|t| t.name == name);
            added.clear();
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let existing = |chain: &str| {
            !chain.starts_with(prefix) && table.is_some_and(|t| t.chains.iter().any(|c| c == chain))
        };
        if let Some(decl) = line.strip_prefix(':')
            && let Some(chain) = decl.split_whitespace().next()
            && existing(chain)
        {
            continue;
        }
        let rule = line
            .strip_prefix("-A ")
            .map(|r| (r, None))
            .or_else(|| line.strip_prefix("-I ").map(|r| (r, Some(()))));
        let Some((rule, insert)) = rule else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let Some((chain, rest)) = rule.split_once(' ') else {
            continue;
        };
        // `-I CHAIN [N] SPEC`: without a number, the rule goes first.
        let (position, spec) = match (insert, rest.split_once(' ')) {
            (None, _) => (None, rest),
            (Some(()), Some((n, spec))) if n.parse::<usize>().is_ok() => (n.parse().ok(), spec),
            (Some(()), _) => (Some(1), rest),
        };
        if existing(chain) && table.is_some_and(|t| t.rules_of(chain).any(|s| s == spec)) {
            continue;
        }
        let count = match added.iter_mut().find(|(c, _)| c == chain) {
            Some(e) => e,
            None => {
                added.push((chain.to_owned(), 0));
                let last = added.len() - 1;
                &mut added[last]
            }
        };
        let before = table.map_or(0, |t| t.rules_of(chain).count()) + count.1;
        count.1 += 1;
        match position {
            Some(n) => out.push_str(&format!("-I {chain} {} {spec}\n", n.min(before + 1))),
            None => out.push_str(&format!("-A {chain} {spec}\n")),
        }
    }
    out
}

/// How many `prefix*` chains `save` has, and the other nova binaries' chains it keeps, by
/// binary (`nova-compute-* (6)`, counted over every table), for `check-config`.
pub fn census(save: &str, prefix: &str) -> (usize, Vec<String>) {
    let mut ours = 0;
    let mut others: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for table in parse(save) {
        for chain in &table.chains {
            if chain.starts_with(prefix) {
                ours += 1;
            } else if let Some(rest) = chain.strip_prefix("nova-")
                && !SHARED_CHAINS.contains(&chain.as_str())
            {
                let binary = rest.split('-').next().unwrap_or(rest);
                *others.entry(format!("nova-{binary}-*")).or_default() += 1;
            }
        }
    }
    (
        ours,
        others
            .into_iter()
            .map(|(b, n)| format!("{b} ({n})"))
            .collect(),
    )
}

/// The destinations of nova's floating IPs in `save`: the `-d ADDR/32` of every DNAT rule in
/// a `prefix*` chain of the nat table. nova rewrites its chains whole from its database, so
/// after its start-up this is the set of floating IPs it keeps.
pub fn dnat_destinations(save: &str, prefix: &str) -> BTreeSet<std::net::IpAddr> {
    let mut out = BTreeSet::new();
    for table in parse(save).into_iter().filter(|t| t.name == "nat") {
        for (chain, spec) in &table.rules {
            if !chain.starts_with(prefix) || target(spec).as_deref() != Some("DNAT") {
                continue;
            }
            let w = words(spec);
            if let Some(d) = w
                .iter()
                .position(|x| x == "-d" || x == "--destination")
                .and_then(|i| w.get(i + 1))
                && let Ok(net) = d
                    .parse::<ipnet::IpNet>()
                    .map(|n| n.addr())
                    .or_else(|_| d.parse())
            {
                out.insert(net);
            }
        }
    }
    out
}

/// One table of an `iptables-save` dump.
struct Table {
    name: String,
    chains: Vec<String>,
    /// (chain, rule spec after `-A CHAIN `).
    rules: Vec<(String, String)>,
}

impl Table {
    /// The table's chains named `prefix*`.
    fn chains_with(&self, prefix: &str) -> BTreeSet<&str> {
        self.chains
            .iter()
            .map(String::as_str)
            .filter(|c| c.starts_with(prefix))
            .collect()
    }

    /// The rule specs of `chain`, in order.
    fn rules_of<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.rules
            .iter()
            .filter(move |(c, _)| c == chain)
            .map(|(_, spec)| spec.as_str())
    }
}

fn parse(save: &str) -> Vec<Table> {
    let mut tables: Vec<Table> = Vec::new();
    for line in save.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('*') {
            tables.push(Table {
                name: name.to_owned(),
                chains: Vec::new(),
                rules: Vec::new(),
            });
        } else if let Some(decl) = line.strip_prefix(':')
            && let (Some(t), Some(chain)) = (tables.last_mut(), decl.split_whitespace().next())
        {
            t.chains.push(chain.to_owned());
        } else if let Some(rule) = line.strip_prefix("-A ")
            && let (Some(t), Some((chain, spec))) = (tables.last_mut(), rule.split_once(' '))
        {
            t.rules.push((chain.to_owned(), spec.trim().to_owned()));
        }
    }
    tables
}

/// The `-j` / `-g` target of a rule spec (shell-like words, so a quoted comment that says
/// `-j nova-x` is not a jump).
fn target(spec: &str) -> Option<String> {
    let words = words(spec);
    words
        .iter()
        .position(|w| w == "-j" || w == "--jump" || w == "-g" || w == "--goto")
        .and_then(|i| words.get(i + 1).cloned())
}

fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// Remove every `prefix*` chain and the jumps to it, IPv4 then IPv6, each family in one
/// `iptables-restore --noflush`. Nothing to do when there is no such chain. IPv6 is skipped
#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "nova-network-";

    /// What nova-network (FlatDHCP, one floating IP) leaves, plus rules of others.
    pub(crate) const NOVA_SAVE: &str = "\
# Generated by iptables-save v1.8.9 (nf_tables) on Wed Nov 25 15:28:13 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:nova-network-OUTPUT - [0:0]
:nova-network-POSTROUTING - [0:0]
:nova-network-PREROUTING - [0:0]
:nova-network-float-snat - [0:0]
:nova-network-snat - [0:0]
:nova-postrouting-bottom - [0:0]
-A PREROUTING -j nova-network-PREROUTING
-A OUTPUT -j nova-network-OUTPUT
-A POSTROUTING -j nova-network-POSTROUTING
-A POSTROUTING -j nova-postrouting-bottom
-A POSTROUTING -s 192.168.122.0/24 -m comment --comment \"not -j nova-x\" -j MASQUERADE
-A nova-network-OUTPUT -d 10.2.3.104/32 -j DNAT --to-destination 10.0.0.3
-A nova-network-POSTROUTING -s 10.0.0.0/24 -d 10.128.0.0/24 -j ACCEPT
-A nova-network-PREROUTING -d 10.2.3.104/32 -j DNAT --to-destination 10.0.0.3
-A nova-network-float-snat -s 10.0.0.3/32 -j SNAT --to-source 10.2.3.104
-A nova-network-snat -j nova-network-float-snat
-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 10.2.3.120
-A nova-postrouting-bottom -j nova-network-snat
COMMIT
# Completed on Wed Nov 25 15:28:13 2026
*mangle
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -p udp --dport 68 -j CHECKSUM --checksum-fill
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:nova-filter-top - [0:0]
:nova-network-FORWARD - [0:0]
:nova-network-INPUT - [0:0]
:nova-network-local - [0:0]
-A INPUT -j nova-network-INPUT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -j nova-filter-top
-A FORWARD -j nova-network-FORWARD
-A OUTPUT -g nova-filter-top
-A nova-filter-top -j nova-network-local
-A nova-network-FORWARD -i br100 -j ACCEPT
-A nova-network-INPUT -i br100 -p udp -m udp --dport 67 -j ACCEPT
COMMIT
";

    #[test]
    fn script_removes_jumps_then_flushes_then_deletes_per_table() {
        let (script, chains, jumps) = removal_script(NOVA_SAVE, P).unwrap();
        let expected = "\
*nat
-D PREROUTING -j nova-network-PREROUTING
-D OUTPUT -j nova-network-OUTPUT
-D POSTROUTING -j nova-network-POSTROUTING
-D POSTROUTING -j nova-postrouting-bottom
-F nova-network-OUTPUT
-F nova-network-POSTROUTING
-F nova-network-PREROUTING
-F nova-network-float-snat
-F nova-network-snat
-F nova-postrouting-bottom
-X nova-network-OUTPUT
-X nova-network-POSTROUTING
-X nova-network-PREROUTING
-X nova-network-float-snat
-X nova-network-snat
-X nova-postrouting-bottom
COMMIT
*filter
-D INPUT -j nova-network-INPUT
-D FORWARD -j nova-filter-top
-D FORWARD -j nova-network-FORWARD
-D OUTPUT -g nova-filter-top
-F nova-filter-top
-F nova-network-FORWARD
-F nova-network-INPUT
-F nova-network-local
-X nova-filter-top
-X nova-network-FORWARD
-X nova-network-INPUT
-X nova-network-local
COMMIT
";
        assert_eq!(script, expected);
        assert_eq!(chains.len(), 10);
        assert!(chains.contains(&"nat/nova-postrouting-bottom".to_string()));
        assert!(chains.contains(&"filter/nova-filter-top".to_string()));
        assert_eq!(jumps, 8);
    }

    #[test]
    fn quoted_comment_is_not_a_jump_and_mangle_untouched() {
        let (script, _, _) = removal_script(NOVA_SAVE, P).unwrap();
        assert!(!script.contains("MASQUERADE"));
        assert!(!script.contains("*mangle"));
        assert!(!script.contains("dport 22"));
    }

    #[test]
    fn nothing_to_do_without_nova_chains() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";
        assert!(removal_script(save, P).is_none());
        assert!(removal_script("", P).is_none());
    }

    #[test]
    fn user_chain_jumping_to_nova_loses_only_that_rule() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n:mine - [0:0]\n:nova-network-x - [0:0]\n\
                    -A INPUT -j mine\n-A mine -j nova-network-x\n-A mine -j DROP\nCOMMIT\n";
        let (script, chains, jumps) = removal_script(save, P).unwrap();
        assert_eq!(
            script,
            "*filter\n-D mine -j nova-network-x\n-F nova-network-x\n-X nova-network-x\nCOMMIT\n"
        );
        assert_eq!(chains, vec!["filter/nova-network-x".to_string()]);
        assert_eq!(jumps, 1);
    }

    /// nova-network and nova-compute on one server, as nova's IptablesManager leaves them.
    const SHARED_SAVE: &str = "\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:nova-compute-FORWARD - [0:0]
:nova-compute-inst-1 - [0:0]
:nova-compute-local - [0:0]
:nova-filter-top - [0:0]
:nova-network-FORWARD - [0:0]
:nova-network-local - [0:0]
-A FORWARD -j nova-filter-top
-A FORWARD -j nova-compute-FORWARD
-A FORWARD -j nova-network-FORWARD
-A OUTPUT -j nova-filter-top
-A nova-compute-inst-1 -j ACCEPT
-A nova-compute-local -d 10.0.0.5/32 -j nova-compute-inst-1
-A nova-filter-top -j nova-compute-local
-A nova-filter-top -j nova-network-local
-A nova-network-FORWARD -i br100 -j ACCEPT
COMMIT
*nat
:POSTROUTING ACCEPT [0:0]
:nova-network-snat - [0:0]
:nova-postrouting-bottom - [0:0]
-A POSTROUTING -j nova-postrouting-bottom
-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 10.2.3.120
-A nova-postrouting-bottom -j nova-network-snat
COMMIT
";

    #[test]
    fn removal_keeps_other_binaries_and_the_shared_chain_they_use() {
        let (script, chains, jumps) = removal_script(SHARED_SAVE, P).unwrap();
        assert_eq!(
            script,
            "\
*filter
-D FORWARD -j nova-network-FORWARD
-D nova-filter-top -j nova-network-local
-F nova-network-FORWARD
-F nova-network-local
-X nova-network-FORWARD
-X nova-network-local
COMMIT
*nat
-D POSTROUTING -j nova-postrouting-bottom
-F nova-network-snat
-F nova-postrouting-bottom
-X nova-network-snat
-X nova-postrouting-bottom
COMMIT
"
        );
        assert_eq!(chains.len(), 4);
        assert_eq!(jumps, 3);
        assert!(!script.contains("nova-compute"));
    }

    #[test]
    fn copy_takes_only_nova_networks_rules_of_a_shared_chain() {
        let part = nova_part(SHARED_SAVE, P);
        assert_eq!(
            part,
            "\
*filter
:nova-filter-top - [0:0]
:nova-network-FORWARD - [0:0]
:nova-network-local - [0:0]
-I FORWARD 1 -j nova-filter-top
-A FORWARD -j nova-network-FORWARD
-I OUTPUT 1 -j nova-filter-top
-A nova-filter-top -j nova-network-local
-A nova-network-FORWARD -i br100 -j ACCEPT
COMMIT
*nat
:nova-network-snat - [0:0]
:nova-postrouting-bottom - [0:0]
-I POSTROUTING 1 -j nova-postrouting-bottom
-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 10.2.3.120
-A nova-postrouting-bottom -j nova-network-snat
COMMIT
"
        );
        assert!(!part.contains("nova-compute"));
    }

    #[test]
    fn fit_keeps_a_shared_chain_that_exists_and_skips_rules_already_there() {
        let part = nova_part(SHARED_SAVE, P);
        // The standby runs nova-compute alone.
        let standby = "\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:nova-compute-local - [0:0]
:nova-filter-top - [0:0]
-A FORWARD -j nova-filter-top
-A OUTPUT -j nova-filter-top
-A nova-filter-top -j nova-compute-local
COMMIT
";
        assert_eq!(
            fit(&part, standby, P),
            "\
*filter
:nova-network-FORWARD - [0:0]
:nova-network-local - [0:0]
-A FORWARD -j nova-network-FORWARD
-A nova-filter-top -j nova-network-local
-A nova-network-FORWARD -i br100 -j ACCEPT
COMMIT
*nat
:nova-network-snat - [0:0]
:nova-postrouting-bottom - [0:0]
-I POSTROUTING 1 -j nova-postrouting-bottom
-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 10.2.3.120
-A nova-postrouting-bottom -j nova-network-snat
COMMIT
"
        );
        // A bare standby gets the part as it is; an insert past the end goes last.
        assert_eq!(fit(&part, "", P), part);
        assert_eq!(
            fit(
                "*filter\n-I FORWARD 3 -j nova-network-x\nCOMMIT\n",
                standby,
                P
            ),
            "*filter\n-I FORWARD 2 -j nova-network-x\nCOMMIT\n"
        );
        assert_eq!(
            fit(
                "*filter\n-I FORWARD -j nova-network-x\nCOMMIT\n",
                standby,
                P
            ),
            "*filter\n-I FORWARD 1 -j nova-network-x\nCOMMIT\n"
        );
    }

    #[test]
    fn census_counts_ours_and_names_the_others() {
        assert_eq!(
            census(SHARED_SAVE, P),
            (3, vec!["nova-compute-* (3)".to_owned()])
        );
    }

    #[test]
    fn an_empty_shared_chain_goes_a_used_one_stays() {
        let save = "*filter\n:FORWARD ACCEPT [0:0]\n:nova-filter-top - [0:0]\n\
                    -A FORWARD -j nova-filter-top\nCOMMIT\n";
        let (script, chains, _) = removal_script(save, P).unwrap();
        assert_eq!(
            script,
            "*filter\n-D FORWARD -j nova-filter-top\n-F nova-filter-top\n-X nova-filter-top\nCOMMIT\n"
        );
        assert_eq!(chains, vec!["filter/nova-filter-top".to_string()]);
        let used = "*filter\n:FORWARD ACCEPT [0:0]\n:nova-filter-top - [0:0]\n\
                    -A FORWARD -j nova-filter-top\n-A nova-filter-top -j nova-api-local\nCOMMIT\n";
        assert!(removal_script(used, P).is_none());
    }

    #[test]
    fn nova_part_recreates_chains_rules_and_jumps_in_place() {
        let save = "\
# Generated by iptables-save
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [5:300]
:OUTPUT ACCEPT [0:0]
:nova-filter-top - [0:0]
:nova-network-FORWARD - [0:0]
:nova-network-local - [0:0]
:other - [0:0]
-A FORWARD -j nova-filter-top
-A FORWARD -i eth9 -j ACCEPT
-A FORWARD -j nova-network-FORWARD
-A OUTPUT -j nova-filter-top
-A nova-filter-top -j nova-network-local
-A nova-network-FORWARD -i br100 -j ACCEPT
-A other -j ACCEPT
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:nova-network-PREROUTING - [0:0]
-A PREROUTING -j nova-network-PREROUTING
-A nova-network-PREROUTING -d 10.2.3.104/32 -j DNAT --to-destination 10.0.0.3
COMMIT
";
        let part = nova_part(save, P);
        assert_eq!(
            part,
            "\
*filter
:nova-filter-top - [0:0]
:nova-network-FORWARD - [0:0]
:nova-network-local - [0:0]
-I FORWARD 1 -j nova-filter-top
-A FORWARD -j nova-network-FORWARD
-I OUTPUT 1 -j nova-filter-top
-A nova-filter-top -j nova-network-local
-A nova-network-FORWARD -i br100 -j ACCEPT
COMMIT
*nat
:nova-network-PREROUTING - [0:0]
-I PREROUTING 1 -j nova-network-PREROUTING
-A nova-network-PREROUTING -d 10.2.3.104/32 -j DNAT --to-destination 10.0.0.3
COMMIT
"
        );
        // What it recreates is exactly what the removal removes.
        let (_, chains, jumps) = removal_script(save, P).unwrap();
        assert_eq!((chains.len(), jumps), (4, 4));
        assert_eq!(nova_part("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", P), "");
        let dests = dnat_destinations(save, P);
        assert_eq!(
            dests.into_iter().collect::<Vec<_>>(),
            vec!["10.2.3.104".parse::<std::net::IpAddr>().unwrap()]
        );
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            words(r#"-m comment --comment "a \"b\" c" -j X"#),
            vec!["-m", "comment", "--comment", "a \"b\" c", "-j", "X"]
        );
    }
}
