#!/usr/bin/env python3
"""In-process check of init_host on leftover state + associate/disassociate (no broker needed).
Run ONLY inside a private network namespace (test_netns.sh does):
  selftest_associate.py FLAGFILE DB
Prints one line per check; exit 1 on any failure."""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flagfile      # noqa: E402
import linux_net     # noqa: E402
import nova_network  # noqa: E402

fails = 0


def check(cond, what):
    global fails
    print(("ok   - " if cond else "FAIL - ") + what)
    fails += 0 if cond else 1


def sh(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout


def main():
    flags_path, db_path = sys.argv[1], sys.argv[2]
    if not os.path.exists("/proc/self/ns/net") or not nova_network.netns_name():
        print("refusing: not inside a named network namespace")
        return 2
    flags = flagfile.load_flags(flags_path)
    args = argparse.Namespace(db=db_path, skip_network=False)
    runner = linux_net.Runner(0.0)
    # a foreign rule that nova's apply must keep
    sh("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "192.0.2.0/24", "-j", "MASQUERADE")
    st = nova_network.NetworkState(flags, args, runner, flags.get("networks_path"), False,
                                   flags_path)
    st.init_host()
    cmds = [" ".join(c["cmd"]) for c in runner.log]
    check(not any(c.startswith("brctl addbr") for c in cmds),
          "restart on leftover state: no bridge re-created (nova's ensure_bridge)")
    check(not any(c.startswith("ip addr add 10.0.0.1") for c in cmds),
          "restart: gateway address kept (nova's initialize_gateway_device)")
    check(any(c.startswith("kill -HUP") for c in cmds),
          "restart: running dnsmasq HUPed, not restarted (nova's restart_dhcp)")
    save = sh("iptables-save")
    check(save.count("-A nova-network-snat -s 10.0.0.0/24 -o eth1 -j SNAT --to-source 10.2.3.120")
          == 1, "restart: SNAT rule present once")
    check(save.count("-A nova-network-float-snat -s 10.0.0.3/32 -o eth1 -j SNAT --to-source "
                     "10.2.3.104") == 1, "restart: float-snat rule present once")
    check("-A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE" in save, "foreign rule kept")
    check(save.count("-A FORWARD -j nova-filter-top") == 1, "jump to nova-filter-top once")

    st.associate("10.2.3.105", "10.0.0.3")
    save = sh("iptables-save")
    check("-A nova-network-PREROUTING -d 10.2.3.105/32 -j DNAT --to-destination 10.0.0.3" in save,
          "associate: DNAT PREROUTING")
    check("-A nova-network-OUTPUT -d 10.2.3.105/32 -j DNAT --to-destination 10.0.0.3" in save,
          "associate: DNAT OUTPUT")
    check("-A nova-network-float-snat -s 10.0.0.3/32 -d 10.0.0.3/32 -j SNAT --to-source 10.2.3.105"
          in save, "associate: float-snat (to the fixed IP)")
    check("-A nova-network-float-snat -s 10.0.0.3/32 -o eth1 -j SNAT --to-source 10.2.3.105"
          in save, "associate: float-snat (out of public_interface)")
    check("-A nova-network-POSTROUTING -s 10.0.0.3/32 -m conntrack --ctstate DNAT -j SNAT "
          "--to-source 10.2.3.105" in save, "associate: POSTROUTING SNAT of DNATed replies")
    ebt = sh("ebtables", "-t", "nat", "-L", "PREROUTING")
    check("--ip-src 10.0.0.3 --ip-dst ! 10.0.0.0/24 -j redirect" in ebt,
          "associate: ebtables nat redirect for 10.0.0.3 (nova's floating_ebtables_rules)")
    check("10.2.3.105/32" in sh("ip", "-o", "addr", "show", "dev", "eth1"),
          "associate: address bound")
    import db as standin_db
    d = standin_db.load(db_path)
    check(any(f["address"] == "10.2.3.105" and f["fixed_address"] == "10.0.0.3"
              for f in d["floating_ips"]), "associate: DB updated")

    st.disassociate("10.2.3.104")
    save = sh("iptables-save")
    check("10.2.3.104" not in save, "disassociate: 10.2.3.104 rules gone")
    check("10.2.3.105/32 -j DNAT" in save, "disassociate: other floating IP kept")
    check("10.2.3.104/32" not in sh("ip", "-o", "addr", "show", "dev", "eth1"),
          "disassociate: address unbound")
    d = standin_db.load(db_path)
    check(any(f["address"] == "10.2.3.104" and f["fixed_address"] is None
              for f in d["floating_ips"]), "disassociate: DB updated")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
