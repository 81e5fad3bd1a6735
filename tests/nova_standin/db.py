#!/usr/bin/env python3
"""The stand-in's "database": one JSON file both stand-ins (primary and standby) read.

Format (version 1):
{
  "version": 1,
  "networks": [ {"label": "private", "bridge": "br100", "bridge_interface": null,
                 "cidr": "10.0.0.0/24", "gateway": "10.0.0.1", "broadcast": "10.0.0.255",
                 "netmask": "255.255.255.0", "dhcp_start": "10.0.0.2",
                 "cidr_v6": null, "gateway_v6": null} ],
  "fixed_ips": [ {"address": "10.0.0.3", "mac": "fa:16:3e:00:00:03", "hostname": "vm1",
                  "bridge": "br100"} ],
  "floating_ips": [ {"address": "10.2.3.104", "fixed_address": "10.0.0.3",
                     "interface": null} ]      # fixed_address null: allocated, not associated
}
`bridge_interface` null means the flat_interface flag (nova's plug takes the flag first when it
is set: `CONF.flat_interface or network['bridge_interface']`, so a site with flat networks on
different interfaces leaves flat_interface unset); floating `interface` null means the
public_interface flag. A fixed IP's `bridge` names its network.

Tool:
  db.py init FILE [--fixed-range 10.0.0.0/24] [--bridge br100] [--cidr-v6 fd00::/64]
                  [--network CIDR,BRIDGE[,IFACE[,CIDR_V6]]]... [--vm vm1=10.0.0.3[=MAC]]...
                  [--floating 10.2.3.104=10.0.0.3]... [--no-defaults]
     --network (repeatable) replaces the one network of --fixed-range/--bridge/--cidr-v6; IFACE
     empty or "-": the flat_interface flag. Unless --no-defaults, vm1 10.0.0.3 with floating IP
     10.2.3.104 (in whichever network holds 10.0.0.3). A --vm goes in the network holding its IP.
  db.py add-floating FILE --count 1000 --range 10.2.4.0/22 [--fixed 10.0.0.3 | --unassociated]
  db.py show FILE
"""
import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import sys
import tempfile

VERSION = 1


def network_from_cidr(cidr, bridge="br100", label="private", cidr_v6=None,
                      bridge_interface=None):
    net = ipaddress.ip_network(cidr, strict=False)
    hosts = net.hosts()
    gateway = next(hosts)
    dhcp_start = next(hosts)
    n = {"label": label, "bridge": bridge, "bridge_interface": bridge_interface,
         "cidr": str(net),
         "gateway": str(gateway), "broadcast": str(net.broadcast_address),
         "netmask": str(net.netmask), "dhcp_start": str(dhcp_start),
         "cidr_v6": None, "gateway_v6": None}
    if cidr_v6:
        n6 = ipaddress.ip_network(cidr_v6, strict=False)
        n["cidr_v6"] = str(n6)
        n["gateway_v6"] = str(next(n6.hosts()))
    return n


def mac_for(address):
    a = ipaddress.ip_address(address).packed
    return "fa:16:3e:%02x:%02x:%02x" % (a[1], a[2], a[3])


def empty():
    return {"version": VERSION, "networks": [], "fixed_ips": [], "floating_ips": []}


def parse_network(text, index):
    """--network CIDR,BRIDGE[,IFACE[,CIDR_V6]] -> a database network (label net<index>)."""
    parts = [p.strip() for p in text.split(",")]
    if not 2 <= len(parts) <= 4 or not parts[0] or not parts[1]:
        raise ValueError("--network %r: expected CIDR,BRIDGE[,IFACE[,CIDR_V6]]" % text)
    iface = parts[2] if len(parts) > 2 and parts[2] not in ("", "-") else None
    cidr_v6 = parts[3] if len(parts) > 3 and parts[3] not in ("", "-") else None
    return network_from_cidr(parts[0], parts[1], label="net%d" % index, cidr_v6=cidr_v6,
                             bridge_interface=iface)


def bridge_for(d, address):
    """The bridge of the network holding ADDRESS (the first network's if none does)."""
    ip = ipaddress.ip_address(address)
    for net in d["networks"]:
        if ip in ipaddress.ip_network(net["cidr"]):
            return net["bridge"]
    if not d["networks"]:
        raise ValueError("no network for fixed IP %s" % address)
    return d["networks"][0]["bridge"]


def add_vm(d, name, address, mac=None):
    d["fixed_ips"].append({"address": address, "mac": mac or mac_for(address),
                           "hostname": name, "bridge": bridge_for(d, address)})


def default_db(fixed_range="10.0.0.0/24", bridge="br100", cidr_v6=None, networks=None):
    d = empty()
    d["networks"].extend(networks or [network_from_cidr(fixed_range, bridge, cidr_v6=cidr_v6)])
    add_vm(d, "vm1", "10.0.0.3")
    d["floating_ips"].append({"address": "10.2.3.104", "fixed_address": "10.0.0.3",
                              "interface": None})
    return d


def load(path):
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    if d.get("version") != VERSION:
        raise ValueError("%s: unsupported db version %r" % (path, d.get("version")))
    for k in ("networks", "fixed_ips", "floating_ips"):
        d.setdefault(k, [])
    return d


def save(path, d):
    """Atomic write: temp file in the same directory, fsync, rename, fsync the directory."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".db-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(d, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def locked(path):
    """Read-modify-write under an flock on PATH.lock; yields the loaded db, saves it on exit."""
    with open(path + ".lock", "a") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        try:
            d = load(path)
            yield d
            save(path, d)
        finally:
            fcntl.flock(lk, fcntl.LOCK_UN)


def add_floating(d, count, rng, fixed=None, interface=None):
    net = ipaddress.ip_network(rng, strict=False)
    taken = {f["address"] for f in d["floating_ips"]}
    added = []
    for ip in net.hosts():
        if len(added) >= count:
            break
        s = str(ip)
        if s in taken:
            continue
        d["floating_ips"].append({"address": s, "fixed_address": fixed, "interface": interface})
        added.append(s)
    if len(added) < count:
        raise ValueError("range %s has room for only %d more floating IPs" % (rng, len(added)))
    return added


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("init", help="write the lab's default database")
    pi.add_argument("file")
    pi.add_argument("--fixed-range", default="10.0.0.0/24")
    pi.add_argument("--bridge", default="br100")
    pi.add_argument("--cidr-v6", default=None)
    pi.add_argument("--network", action="append", default=[],
                    metavar="CIDR,BRIDGE[,IFACE[,CIDR_V6]]",
                    help="a network (repeatable); replaces --fixed-range/--bridge/--cidr-v6")
    pi.add_argument("--no-defaults", action="store_true",
                    help="no vm1 / floating 10.2.3.104, only the network")
    pi.add_argument("--vm", action="append", default=[], metavar="NAME=IP[=MAC]")
    pi.add_argument("--floating", action="append", default=[], metavar="FLOAT=FIXED")
    pa = sub.add_parser("add-floating", help="append N floating IPs from a range")
    pa.add_argument("file")
    pa.add_argument("--count", type=int, required=True)
    pa.add_argument("--range", required=True)
    g = pa.add_mutually_exclusive_group()
    g.add_argument("--fixed", default="10.0.0.3", help="associate them to this fixed IP")
    g.add_argument("--unassociated", action="store_true")
    pa.add_argument("--interface", default=None)
    ps = sub.add_parser("show")
    ps.add_argument("file")
    a = p.parse_args(argv)

    if a.cmd == "init":
        networks = [parse_network(t, i) for i, t in enumerate(a.network, 1)]
        if not networks:
            networks = [network_from_cidr(a.fixed_range, a.bridge, cidr_v6=a.cidr_v6)]
        bridges = [n["bridge"] for n in networks]
        if len(set(bridges)) != len(bridges):
            raise ValueError("two networks on one bridge: %s" % ", ".join(bridges))
        if a.no_defaults:
            d = empty()
            d["networks"].extend(networks)
        else:
            d = default_db(networks=networks)
        for v in a.vm:
            parts = v.split("=")
            if len(parts) not in (2, 3):
                raise ValueError("--vm %r: expected NAME=IP[=MAC]" % v)
            add_vm(d, parts[0], parts[1], parts[2] if len(parts) > 2 else None)
        for fl in a.floating:
            f, x = fl.split("=")
            d["floating_ips"].append({"address": f, "fixed_address": x, "interface": None})
        save(a.file, d)
        print(json.dumps({"file": a.file, "networks": len(d["networks"]),
                          "fixed_ips": len(d["fixed_ips"]),
                          "floating_ips": len(d["floating_ips"])}))
    elif a.cmd == "add-floating":
        with locked(a.file) as d:
            added = add_floating(d, a.count, a.range,
                                 None if a.unassociated else a.fixed, a.interface)
        print(json.dumps({"file": a.file, "added": len(added),
                          "first": added[0] if added else None,
                          "last": added[-1] if added else None,
                          "floating_ips": len(d["floating_ips"])}))
    elif a.cmd == "show":
        json.dump(load(a.file), sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as e:
        print("db.py: %s" % e, file=sys.stderr)
        sys.exit(2)
