//! nova's iptables state: every chain named `nova-*` (`nova-filter-top`,
//! `nova-postrouting-bottom`, `nova-network-*`) and the jumps to them from other chains, removed
//! in one `iptables-restore --noflush` per family, what nova's `setup_iptables.sh clear all`
//! did by hand.
//!
//! Reads `iptables-save` / `ip6tables-save`, computes the removal script with a pure function
//! ([`removal_script`]) and applies it atomically (each table commits whole or not at all).
//! Owns only chains with the given prefix and the rules that jump to them; every other rule,
//! chain and policy is left as it was. IPv6 is skipped, with a note, when `ip6tables` is absent.

use std::collections::BTreeSet;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The chain-name prefix nova uses for every chain it creates.
pub const NOVA_PREFIX: &str = "nova-";

/// Why the chains could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tool could not be run.
    #[error("cannot run {tool}: {source}")]
    Spawn {
        /// The tool (`iptables-save`, ...).
        tool: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A tool exited with an error.
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        /// The tool.
        tool: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// An address family's pair of tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `iptables-save` / `iptables-restore`.
    V4,
    /// `ip6tables-save` / `ip6tables-restore`.
    V6,
}

impl Family {
    pub(crate) fn save(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }

    pub(crate) fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }
}

/// What [`remove_chains`] did for one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The family.
    pub family: Family,
    /// `table/chain` of every chain deleted (empty: nothing to do).
    pub chains: Vec<String>,
    /// Jumps deleted from other chains.
    pub jumps: usize,
    /// Why the family was skipped (its tools are missing), if it was.
    pub skipped: Option<String>,
}

/// The `iptables-restore --noflush` input that removes every chain named `prefix*` from
/// `save` (an `iptables-save` dump) and every rule of another chain that jumps (`-j`) or goes
/// (`-g`) to one, table by table: the jumps deleted first, then the chains flushed, then
/// deleted, then `COMMIT`. `None` when no table has such a chain. Also returns the chains
/// (`table/chain`) and the count of jumps it removes.
pub fn removal_script(save: &str, prefix: &str) -> Option<(String, Vec<String>, usize)> {
    let mut script = String::new();
    let mut all_chains = Vec::new();
    let mut all_jumps = 0;
    for table in parse(save) {
        let ours = table.chains_with(prefix);
        if ours.is_empty() {
            continue;
        }
        script.push_str(&format!("*{}\n", table.name));
        for (chain, spec) in &table.rules {
            if ours.contains(chain.as_str()) {
                continue;
            }
            if target(spec).is_some_and(|t| ours.contains(t.as_str())) {
                script.push_str(&format!("-D {chain} {spec}\n"));
                all_jumps += 1;
            }
        }
        for c in &ours {
            script.push_str(&format!("-F {c}\n"));
        }
        for c in &ours {
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

/// The part of `save` (an `iptables-save` dump) that is nova's, as `iptables-restore
/// --noflush` input that recreates it where no nova chain exists: per table, every
/// `prefix*` chain, its rules in order, and the rules of other chains that jump to one. A
/// jump that came before every other rule of its chain (nova's `-I` jumps to
/// `nova-filter-top`) is inserted at the same position; later ones are appended. Empty when
/// `save` has no nova chain.
pub fn nova_part(save: &str, prefix: &str) -> String {
    let mut script = String::new();
    for table in parse(save) {
        let ours = table.chains_with(prefix);
        if ours.is_empty() {
            continue;
        }
        script.push_str(&format!("*{}\n", table.name));
        for c in &ours {
            script.push_str(&format!(":{c} - [0:0]\n"));
        }
        // Position of the next rule in each foreign chain, and whether only jumps to nova
        // chains came before it.
        let mut seen: Vec<(&str, usize, bool)> = Vec::new();
        for (chain, spec) in &table.rules {
            if ours.contains(chain.as_str()) {
                script.push_str(&format!("-A {chain} {spec}\n"));
                continue;
            }
            let jump = target(spec).is_some_and(|t| ours.contains(t.as_str()));
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

/// `iptables-save` (or `ip6tables-save`): the dump, or `None` when the tool is not installed.
pub async fn save(family: Family) -> Result<Option<String>, Error> {
    match run(family.save(), &[], None).await {
        Ok(s) => Ok(Some(s)),
        Err(Error::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `iptables-restore --noflush` (or the IPv6 one) of `script`: each table commits whole or
/// not at all.
pub async fn restore_noflush(family: Family, script: &str) -> Result<(), Error> {
    run(family.restore(), &["--noflush"], Some(script))
        .await
        .map(|_| ())
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
/// (reported in [`Removed::skipped`]) when `ip6tables-save` cannot be run.
pub async fn remove_chains(prefix: &str) -> Result<Vec<Removed>, Error> {
    let mut out = Vec::new();
    for family in [Family::V4, Family::V6] {
        let save = match run(family.save(), &[], None).await {
            Ok(s) => s,
            Err(Error::Spawn { source, .. })
                if family == Family::V6 && source.kind() == std::io::ErrorKind::NotFound =>
            {
                tracing::info!(
                    step = "firewall",
                    family = "ipv6",
                    "ip6tables-save not found, IPv6 skipped"
                );
                out.push(Removed {
                    family,
                    chains: Vec::new(),
                    jumps: 0,
                    skipped: Some("ip6tables-save not found".into()),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some((script, chains, jumps)) = removal_script(&save, prefix) else {
            out.push(Removed {
                family,
                chains: Vec::new(),
                jumps: 0,
                skipped: None,
            });
            continue;
        };
        run(family.restore(), &["--noflush"], Some(&script)).await?;
        out.push(Removed {
            family,
            chains,
            jumps,
            skipped: None,
        });
    }
    Ok(out)
}

/// Run `tool args`, feeding `stdin`, and return its stdout.
async fn run(tool: &'static str, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Spawn { tool, source })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|source| Error::Spawn { tool, source })?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|source| Error::Spawn { tool, source })?;
    if !output.status.success() {
        return Err(Error::Failed {
            tool,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (script, chains, jumps) = removal_script(NOVA_SAVE, NOVA_PREFIX).unwrap();
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
        let (script, _, _) = removal_script(NOVA_SAVE, NOVA_PREFIX).unwrap();
        assert!(!script.contains("MASQUERADE"));
        assert!(!script.contains("*mangle"));
        assert!(!script.contains("dport 22"));
    }

    #[test]
    fn nothing_to_do_without_nova_chains() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";
        assert!(removal_script(save, NOVA_PREFIX).is_none());
        assert!(removal_script("", NOVA_PREFIX).is_none());
    }

    #[test]
    fn user_chain_jumping_to_nova_loses_only_that_rule() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n:mine - [0:0]\n:nova-x - [0:0]\n\
                    -A INPUT -j mine\n-A mine -j nova-x\n-A mine -j DROP\nCOMMIT\n";
        let (script, chains, jumps) = removal_script(save, NOVA_PREFIX).unwrap();
        assert_eq!(
            script,
            "*filter\n-D mine -j nova-x\n-F nova-x\n-X nova-x\nCOMMIT\n"
        );
        assert_eq!(chains, vec!["filter/nova-x".to_string()]);
        assert_eq!(jumps, 1);
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
        let part = nova_part(save, NOVA_PREFIX);
        assert_eq!(
            part,
            "\
*filter
:nova-filter-top - [0:0]
:nova-network-FORWARD - [0:0]
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
        let (_, chains, jumps) = removal_script(save, NOVA_PREFIX).unwrap();
        assert_eq!((chains.len(), jumps), (3, 4));
        assert_eq!(
            nova_part("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", NOVA_PREFIX),
            ""
        );
        let dests = dnat_destinations(save, NOVA_PREFIX);
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
