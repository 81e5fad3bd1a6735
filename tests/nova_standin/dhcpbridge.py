#!/usr/bin/env python3
"""The stand-in's nova-dhcpbridge: dnsmasq's --dhcp-script (nova's `dhcpbridge` flag points here).

  dhcpbridge.py init                        print the leases of the network's fixed IPs marked
                                            leased (dnsmasq runs it at start: --leasefile-ro)
  dhcpbridge.py add|old|del MAC IP [NAME]   mark the fixed IP leased (add, old) or not (del)

As nova's: CONFIG_FILE (a JSON list of flagfiles) and NETWORK_ID come from the environment
restart_dhcp gives dnsmasq; the database is the flagfile's `standin_db` (none: nothing stored).
nova's own dhcpbridge prints linux_net.get_dhcp_leases on init and calls lease_fixed_ip /
release_fixed_ip over RPC; this one reads and writes the JSON database directly. Standard library
only (dnsmasq runs it with the system python3), and it never fails dnsmasq: errors go to stderr.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import db as standin_db   # noqa: E402
import flagfile           # noqa: E402

LEASE_TIME = 86400        # nova's dhcp_lease_time default


def database():
    try:
        files = json.loads(os.environ.get("CONFIG_FILE", "[]"))
    except ValueError:
        files = []
    for path in files if isinstance(files, list) else [files]:
        try:
            flags = flagfile.load_flags(path)
        except flagfile.FlagError:
            continue
        if flags.get("standin_db"):
            return flags.get("standin_db"), flags.get_int("dhcp_lease_time", LEASE_TIME)
    return None, LEASE_TIME


def network_bridge(d):
    try:
        index = int(os.environ.get("NETWORK_ID", "1"))
        return d["networks"][index - 1].get("bridge")
    except (ValueError, IndexError):
        return None


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 0
    action = argv[0]
    path, lease_time = database()
    if path is None:
        return 0
    if action == "init":
        d = standin_db.load(path)
        bridge = network_bridge(d)
        expiry = int(time.time()) + lease_time
        for f in d["fixed_ips"]:
            if f.get("leased") and f.get("bridge", bridge) == bridge:
                # nova's _host_lease: expiry MAC IP hostname *
                print("%d %s %s %s *" % (expiry, f["mac"], f["address"], f["hostname"] or "*"))
        return 0
    if action in ("add", "old", "del") and len(argv) >= 3:
        ip = argv[2]
        with standin_db.locked(path) as d:
            for f in d["fixed_ips"]:
                if f["address"] == ip:
                    f["leased"] = action != "del"
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (OSError, ValueError) as e:
        print("dhcpbridge: %s" % e, file=sys.stderr)
        sys.exit(0)
