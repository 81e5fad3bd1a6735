#!/usr/bin/env python3
"""Another nova binary's iptables chains beside nova-network's, made by nova 17.0.13's own code.

On a real network server nova-compute (and nova-api) run beside nova-network, each with nova's
`linux_net.IptablesManager` under its own binary name: their wrapped chains (`nova-compute-*`)
hang off the same shared unwrapped chains, `nova-filter-top` (filter) and
`nova-postrouting-bottom` (nat), as nova-network's. The HA daemon must remove or mirror only
nova-network's; a lab test puts a real nova-compute's chains in a network-server namespace with
`apply` and, after a takeover or release, asks `check` whether they survived.

  other_binary.py apply --binary-name nova-compute [--lock-path DIR] [--allow-root-netns]
  other_binary.py check --binary-name nova-compute

apply: the stand-in's CONF and executor (linux_net.configure, a plain subprocess, no rootwrap
cost), `binary_name` set and a fresh IptablesManager, then nova-compute's own firewall driver
(`nova.virt.firewall.IptablesFirewallDriver`) prepares the filter of one instance of its own
(10.0.0.5 on the lab's 10.0.0.0/24, one security-group rule: tcp 22; not the lab's vm1, whose
pings the security group would drop), plus one rule in the wrapped nat
chain `snat`; one iptables-save/iptables-restore (nova's defer_apply_off). `--lock-path`: nova's
external `iptables` lock; give the stand-in's lock_path to serialize with it as on a real server
(default: a private temporary directory).
check: prints one JSON object (chains of the binary per table, the jumps from the shared chains,
rule counts, what is missing); exit 0 if everything apply makes is there, 1 if not, 2 on error.
Read-only, with or without nova-network's chains present.
"""

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import linux_net as standin  # noqa: E402
import nova_network  # noqa: E402

SHARED = {"filter": "nova-filter-top", "nat": "nova-postrouting-bottom"}
SHARED_TARGET = {"filter": "local", "nat": "snat"}  # the wrapped chain each shared chain jumps to
# vm1 of the stand-in's default database (db.py init), the instance nova-compute filters.
FIXED_IP, CIDR, GATEWAY, MAC = "10.0.0.5", "10.0.0.0/24", "10.0.0.1", "fa:16:3e:00:00:05"
# nova-compute adds no nat rule of its own on FlatDHCP; one inert rule (TEST-NET-3 to itself) in
# its wrapped snat chain makes that chain carry more than nova's float-snat jump.
NAT_RULE = "-s 198.51.100.0/24 -d 198.51.100.0/24 -j ACCEPT"
SSH_RULE = types.SimpleNamespace(
    cidr="0.0.0.0/0", protocol="tcp", from_port=22, to_port=22, grantee_group=None
)


def fail(msg):
    print("other_binary.py: " + msg, file=sys.stderr)
    sys.exit(2)


def binary_name(name):
    """nova cuts binary_name to 16 characters (chain names up to 28). nova's apply drops every
    line that CONTAINS binary_name, so a name inside nova-network's or the shared chains' names
    (`nova`, `nova-net`, `filter`) would wipe them, and nova-network's apply would wipe a name
    containing `nova-network`: refused."""
    if not name or len(name) > 16 or any(c.isspace() for c in name):
        raise argparse.ArgumentTypeError("%r: 1 to 16 characters, no blanks (nova's limit)" % name)
    for other in ("nova-network", *SHARED.values()):
        if name in other or other in name:
            raise argparse.ArgumentTypeError(
                "%r overlaps %s: nova's apply removes every line containing its binary_name"
                % (name, other)
            )
    return name


def build(binary, lock_path):
    """nova's IptablesManager for `binary`, filled the way nova-compute fills it, deferred (not
    applied): `check` builds the same to know what `apply` made."""
    runner = standin.Runner(command_cost=0)
    ln = standin.configure(
        {"lock_path": lock_path}, runner, os.path.join(lock_path, "networks"), use_ipv6=False
    )
    # nova sets binary_name from the running program at import; the stand-in's configure set
    # nova-network's, so set ours and rebuild the manager as configure does.
    ln.binary_name = binary
    ln.iptables_manager = ln.IptablesManager()
    ln.iptables_manager.defer_apply_on()
    from nova.network import model

    try:
        import nova.context  # noqa: F401
    except ImportError:
        # nova.context imports nova.policy (oslo.policy: not installed, the stand-in's paths
        # never needed it); the firewall driver only calls get_admin_context() and hands the
        # result to the database call replaced below.
        sys.modules["nova.context"] = types.SimpleNamespace(get_admin_context=lambda: None)
    from nova.virt import firewall

    # the driver's only database call: the instance's security-group rules
    firewall.objects = types.SimpleNamespace(
        SecurityGroupRuleList=types.SimpleNamespace(
            get_by_instance=lambda ctxt, instance: [SSH_RULE]
        )
    )
    driver = firewall.IptablesFirewallDriver()  # sg-fallback chain, -j DROP
    subnet = model.Subnet(
        cidr=CIDR,
        gateway=model.IP(address=GATEWAY),
        ips=[model.FixedIP(address=FIXED_IP)],
        dhcp_server=GATEWAY,
    )
    vif = model.VIF(
        id="vif-1", address=MAC, network=model.Network(id="net-1", bridge="br100", subnets=[subnet])
    )
    instance = types.SimpleNamespace(id=1, uuid="00000000-0000-0000-0000-000000000001")
    # inst-1 chain, `local -d 10.0.0.5 -j inst-1`, DHCP request ACCEPTs in INPUT and FORWARD
    driver.prepare_instance_filter(instance, model.NetworkInfo([vif]))
    ln.iptables_manager.ipv4["nat"].add_rule("snat", NAT_RULE)
    return ln.iptables_manager


def target(rule):
    """The `-j` target of a rule (iptables-save rewrites matches, never the target)."""
    words = rule.split()
    return words[words.index("-j") + 1] if "-j" in words[:-1] else ""


def expected(binary, mgr):
    """Per table: the chains and the (chain, target) counts of every rule the manager writes."""
    out = {}
    for name, table in mgr.ipv4.items():
        chains = {"%s-%s" % (binary, c) for c in table.chains} | set(table.unwrapped_chains)
        rules = collections.Counter()
        for r in table.rules:
            chain = "%s-%s" % (binary, r.chain) if r.wrap else r.chain
            rules[(chain, target(r.rule))] += 1
        out[name] = (chains, rules)
    return out


def saved():
    """iptables-save: per table, its chains and its rules as (chain, rest of the line)."""
    text = subprocess.run(
        ["iptables-save"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    tables, cur = {}, None
    for line in text.splitlines():
        if line.startswith("*"):
            cur = tables.setdefault(line[1:], ([], []))
        elif cur is not None and line.startswith(":"):
            cur[0].append(line[1:].split()[0])
        elif cur is not None and line.startswith("-A "):
            chain, _, rest = line[3:].partition(" ")
            cur[1].append((chain, rest))
    return tables


def check(binary):
    mgr = build(binary, tempfile.gettempdir())  # never applied: no lock taken
    have = saved()
    prefix = binary + "-"
    report = {
        "binary": binary,
        "chains": {},
        "jumps": {},
        "shared": {},
        "rules": {},
        "missing": {"chains": [], "rules": []},
        "nova_network_chains": sum(
            c.startswith("nova-network-") for t in have.values() for c in t[0]
        ),
    }
    for name, (chains, rules) in expected(binary, mgr).items():
        present, lines = have.get(name, ([], []))
        report["chains"][name] = sorted(c for c in present if c.startswith(prefix))
        report["missing"]["chains"] += [
            "%s: %s" % (name, c) for c in sorted(chains) if c not in present
        ]
        found = collections.Counter((c, target(r)) for c, r in lines)
        for (chain, tgt), n in sorted(rules.items()):
            if found[(chain, tgt)] < n:
                report["missing"]["rules"].append(
                    "%s: -A %s -j %s (%d expected, %d present)"
                    % (name, chain, tgt, n, found[(chain, tgt)])
                )
        report["rules"][name] = {
            "expected": sum(n for (c, _), n in rules.items() if c.startswith(prefix)),
            "present": sum(c.startswith(prefix) for c, _ in lines),
        }
        if name in SHARED:
            top = SHARED[name]
            jump = "-A %s -j %s%s" % (top, prefix, SHARED_TARGET[name])
            report["jumps"][jump] = (top, "-j %s%s" % (prefix, SHARED_TARGET[name])) in lines
            report["shared"][top] = [r for c, r in lines if c == top]  # in order
    report["ok"] = not (report["missing"]["chains"] or report["missing"]["rules"])
    print(json.dumps(report, indent=1, sort_keys=True))
    return 0 if report["ok"] else 1


def apply(binary, lock_path, allow_root_netns):
    # Safety for a lab machine: nova's apply rewrites whole tables (as selftest_associate.py).
    if not allow_root_netns and not nova_network.netns_name():
        fail(
            "refusing: not inside a named network namespace; run it under `ip netns exec NS` "
            "(or --allow-root-netns)"
        )
    own = lock_path is None
    lock_path = lock_path or tempfile.mkdtemp(prefix="nova-other-binary-locks.")
    os.makedirs(lock_path, exist_ok=True)
    try:
        mgr = build(binary, lock_path)
        mgr.defer_apply_off()  # one iptables-save -c / iptables-restore -c
    finally:
        if own:
            shutil.rmtree(lock_path, ignore_errors=True)
    print("other_binary.py: applied %s's chains" % binary)
    return 0


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("apply", help="put the binary's chains in place (nova's apply)")
    c = sub.add_parser("check", help="JSON report; exit 0 if all of apply's chains are there")
    for s in (a, c):
        s.add_argument(
            "--binary-name",
            required=True,
            type=binary_name,
            help="nova's binary_name, e.g. nova-compute or nova-api",
        )
    a.add_argument("--lock-path", help="[oslo_concurrency] lock_path (default: a temporary dir)")
    a.add_argument(
        "--allow-root-netns", action="store_true", help="run even outside a named network namespace"
    )
    args = p.parse_args()
    try:
        if args.cmd == "apply":
            return apply(args.binary_name, args.lock_path, args.allow_root_netns)
        return check(args.binary_name)
    except subprocess.CalledProcessError as e:
        fail("%s failed (rc %s): %s" % (e.cmd[0], e.returncode, (e.stderr or "").strip()))
    except standin.errors() as e:
        fail("%s: %s" % (args.cmd, e))


if __name__ == "__main__":
    sys.exit(main())
