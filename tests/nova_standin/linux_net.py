"""What nova-network's linux_net does at start for FlatDHCPManager, as commands.

Every `ip`, `iptables-save`/`iptables-restore`, `dnsmasq`, `radvd`, sysctl and `kill -HUP` first
sleeps `command_cost` seconds (nova ran each through sudo/rootwrap), then runs. Every command is
logged with its timing in Runner.log.
"""
import ipaddress
import os
import subprocess
import time

BINARY_NAME = "nova-network"   # nova: basename of the running binary, [:16]


class CommandError(Exception):
    pass


class Runner:
    def __init__(self, command_cost=0.05, dry=False):
        self.cost = command_cost
        self.dry = dry
        self.log = []

    def run(self, cmd, input=None, ok_codes=(0,), cost=True):
        if cost and self.cost > 0:
            time.sleep(self.cost)
        t0 = time.time()
        if self.dry:
            self.log.append({"cmd": cmd, "rc": None, "skipped": True, "t": t0})
            return ""
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=30)
        self.log.append({"cmd": cmd, "rc": p.returncode, "t": t0,
                         "duration": round(time.time() - t0, 4)})
        if p.returncode not in ok_codes:
            raise CommandError("%s: rc=%d: %s" % (" ".join(cmd), p.returncode, p.stderr.strip()))
        return p.stdout

    def sleep_cost(self):
        """Cost of a root command we do in-process (sysctl write)."""
        if self.cost > 0:
            time.sleep(self.cost)


def device_exists(dev):
    # nova: os.path.exists('/sys/class/net/<dev>'), no command
    return os.path.exists("/sys/class/net/%s" % dev)


# ---------------------------------------------------------------------------------------------
# IptablesManager, after nova/network/linux_net.py (Folsom..Liberty shape):
# wrapped chains are named "<binary_name>-<chain>", "$chain" in a rule means the wrapped chain.
# ---------------------------------------------------------------------------------------------
class IptablesTable:
    def __init__(self):
        self.chains = []          # wrapped chain names (short)
        self.unwrapped = []       # shared chains: nova-filter-top, nova-postrouting-bottom
        self.rules = []           # (chain, rule, wrap, top)

    def add_chain(self, name, wrap=True):
        lst = self.chains if wrap else self.unwrapped
        if name not in lst:
            lst.append(name)

    def add_rule(self, chain, rule, wrap=True, top=False):
        r = (chain, rule, wrap, top)
        if r not in self.rules:
            self.rules.append(r)

    def remove_rule(self, chain, rule, wrap=True, top=False):
        r = (chain, rule, wrap, top)
        if r in self.rules:
            self.rules.remove(r)

    def _expand(self, text):
        for c in sorted(self.chains, key=len, reverse=True):
            text = text.replace("$" + c, "%s-%s" % (BINARY_NAME, c))
        return text

    def rule_lines(self, top):
        out = []
        for chain, rule, wrap, is_top in self.rules:
            if is_top != top:
                continue
            name = "%s-%s" % (BINARY_NAME, chain) if wrap else chain
            out.append("[0:0] -A %s %s" % (name, self._expand(rule)))
        return out

    def chain_lines(self):
        return ([":%s - [0:0]" % c for c in self.unwrapped] +
                [":%s-%s - [0:0]" % (BINARY_NAME, c) for c in self.chains])


BUILTIN = {
    "filter": {"INPUT": "ACCEPT", "FORWARD": "ACCEPT", "OUTPUT": "ACCEPT"},
    "nat": {"PREROUTING": "ACCEPT", "INPUT": "ACCEPT", "OUTPUT": "ACCEPT", "POSTROUTING": "ACCEPT"},
    "mangle": {"PREROUTING": "ACCEPT", "INPUT": "ACCEPT", "FORWARD": "ACCEPT",
               "OUTPUT": "ACCEPT", "POSTROUTING": "ACCEPT"},
}


class IptablesManager:
    def __init__(self, runner, use_ipv6=False):
        self.runner = runner
        self.use_ipv6 = use_ipv6
        self.ipv4 = {"filter": IptablesTable(), "nat": IptablesTable(), "mangle": IptablesTable()}
        self.ipv6 = {"filter": IptablesTable()}
        self.last_restore = {}
        for tables in (self.ipv4, self.ipv6):
            tables["filter"].add_chain("nova-filter-top", wrap=False)
            tables["filter"].add_rule("FORWARD", "-j nova-filter-top", wrap=False, top=True)
            tables["filter"].add_rule("OUTPUT", "-j nova-filter-top", wrap=False, top=True)
            tables["filter"].add_chain("local")
            tables["filter"].add_rule("nova-filter-top", "-j $local", wrap=False)
        builtin = {4: {"filter": ["INPUT", "OUTPUT", "FORWARD"],
                       "nat": ["PREROUTING", "OUTPUT", "POSTROUTING"],
                       "mangle": ["POSTROUTING"]},
                   6: {"filter": ["INPUT", "OUTPUT", "FORWARD"]}}
        for ver, tables in ((4, self.ipv4), (6, self.ipv6)):
            for table, chains in builtin[ver].items():
                for chain in chains:
                    tables[table].add_chain(chain)
                    tables[table].add_rule(chain, "-j $%s" % chain, wrap=False)
        nat = self.ipv4["nat"]
        nat.add_chain("nova-postrouting-bottom", wrap=False)
        nat.add_rule("POSTROUTING", "-j nova-postrouting-bottom", wrap=False)
        nat.add_chain("snat")
        nat.add_rule("nova-postrouting-bottom", "-j $snat", wrap=False)
        nat.add_chain("float-snat")
        nat.add_rule("snat", "-j $float-snat")

    @staticmethod
    def _ours(line, table_obj):
        """Is this iptables-save line ours (to be replaced)?"""
        body = line.split("] ", 1)[1] if line.startswith("[") else line
        if body.startswith(":"):
            name = body[1:].split()[0]
            return name.startswith(BINARY_NAME + "-") or name in table_obj.unwrapped
        if body.startswith("-A "):
            parts = body.split()
            chain = parts[1]
            if chain.startswith(BINARY_NAME + "-") or chain in table_obj.unwrapped:
                return True
            # unwrapped jumps into our chains from builtin chains
            if "-j" in parts:
                target = parts[parts.index("-j") + 1]
                if target.startswith(BINARY_NAME + "-") or target in table_obj.unwrapped:
                    return True
        return False

    def _modify(self, saved, tables):
        """Rewrite iptables-save output: drop our old lines, add ours, like nova's _modify_rules."""
        sections = {}     # table -> list of lines between *table and COMMIT
        order = []
        cur = None
        for line in saved.splitlines():
            if line.startswith("*"):
                cur = line[1:].strip()
                sections[cur] = []
                order.append(cur)
            elif line.strip() == "COMMIT":
                cur = None
            elif cur is not None:
                sections[cur].append(line)
        out = []
        for table in tables:
            if table not in sections:
                sections[table] = [":%s %s [0:0]" % (c, pol) for c, pol in BUILTIN[table].items()]
                order.append(table)
        for table in order:
            lines = sections[table]
            tobj = tables.get(table)
            if tobj is not None:
                kept = [rule for rule in lines if not self._ours(rule, tobj)]
                decls = [rule for rule in kept if rule.startswith(":")]
                rules = [rule for rule in kept
                         if not rule.startswith(":") and not rule.startswith("#")]
                lines = (decls + tobj.chain_lines() + tobj.rule_lines(top=True) + rules +
                         tobj.rule_lines(top=False))
            out.append("*%s" % table)
            out.extend(lines)
            out.append("COMMIT")
        return "\n".join(out) + "\n"

    def apply(self):
        fams = [("iptables", self.ipv4)]
        if self.use_ipv6:
            fams.append(("ip6tables", self.ipv6))
        for cmd, tables in fams:
            saved = self.runner.run([cmd + "-save", "-c"])
            new = self._modify(saved or "", tables)
            self.last_restore[cmd] = new
            self.runner.run([cmd + "-restore", "-c"], input=new)


# ---------------------------------------------------------------------------------------------
# The FlatDHCP start-up, command by command
# ---------------------------------------------------------------------------------------------
def floating_forward_rules(floating, fixed):
    return [("PREROUTING", "-d %s -j DNAT --to-destination %s" % (floating, fixed)),
            ("OUTPUT", "-d %s -j DNAT --to-destination %s" % (floating, fixed)),
            ("float-snat", "-s %s -j SNAT --to-source %s" % (fixed, floating))]


class LinuxNet:
    def __init__(self, flags, runner, networks_path, use_ipv6=False):
        self.flags = flags
        self.runner = runner
        self.networks_path = networks_path
        self.use_ipv6 = use_ipv6
        self.ipt = IptablesManager(runner, use_ipv6)
        self.public_interface = flags.get("public_interface", "eth0")
        self.applied = {"bridges": [], "dnsmasq": [], "radvd": [], "floating": [],
                        "addresses": []}

    def dhcp_file(self, dev, kind):
        return os.path.abspath(os.path.join(self.networks_path, "nova-%s.%s" % (dev, kind)))

    # linux_net.init_host + metadata: the SNAT of fixed_range to routing_source_ip
    def init_host(self, fixed_range):
        rsi = self.flags.get("routing_source_ip")
        metadata_host = self.flags.get("metadata_host", rsi or "127.0.0.1")
        metadata_port = self.flags.get_int("metadata_port", 8775)
        nat = self.ipt.ipv4["nat"]
        if rsi:
            nat.add_rule("snat", "-s %s -j SNAT --to-source %s" % (fixed_range, rsi))
        nat.add_rule("POSTROUTING", "-s %s -d %s/32 -j ACCEPT" % (fixed_range, metadata_host))
        nat.add_rule("POSTROUTING", "-s %(r)s -d %(r)s -m conntrack ! --ctstate DNAT -j ACCEPT"
                     % {"r": fixed_range})
        nat.add_rule("PREROUTING", "-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT "
                     "--to-destination %s:%s" % (metadata_host, metadata_port))
        # ensure_metadata_ip
        self.runner.run(["ip", "addr", "add", "169.254.169.254/32", "scope", "link", "dev", "lo"],
                        ok_codes=(0, 2, 254))
        self.applied["addresses"].append("169.254.169.254/32 dev lo")

    # LinuxBridgeInterfaceDriver.ensure_bridge + initialize_gateway_device
    def ensure_bridge(self, net, flat_interface):
        bridge = net["bridge"]
        iface = net.get("bridge_interface") or flat_interface
        if not device_exists(bridge):
            self.runner.run(["ip", "link", "add", "name", bridge, "type", "bridge",
                             "forward_delay", "0", "stp_state", "0"])
            self.runner.run(["ip", "link", "set", bridge, "up"])
        if iface:
            self.runner.run(["ip", "link", "set", iface, "master", bridge])
            self.runner.run(["ip", "link", "set", iface, "up"])
        prefix = ipaddress.ip_network(net["cidr"]).prefixlen
        have = self.runner.run(["ip", "-o", "-4", "addr", "show", "dev", bridge, "scope",
                                "global"])
        want = "%s/%d" % (net["gateway"], prefix)
        if want not in (have or ""):
            self.runner.run(["ip", "addr", "add", want, "brd", net["broadcast"], "dev", bridge])
        self.applied["addresses"].append("%s dev %s" % (want, bridge))
        if self.use_ipv6 and net.get("gateway_v6"):
            p6 = ipaddress.ip_network(net["cidr_v6"]).prefixlen
            self.runner.run(["ip", "-f", "inet6", "addr", "change",
                             "%s/%d" % (net["gateway_v6"], p6), "dev", bridge])
        # initialize_gateway_device: sysctl -w net.ipv4.ip_forward=1
        self.runner.sleep_cost()
        if not self.runner.dry:
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write("1\n")
            if self.use_ipv6:
                with open("/proc/sys/net/ipv6/conf/all/forwarding", "w") as f:
                    f.write("1\n")
        filt = self.ipt.ipv4["filter"]
        filt.add_rule("FORWARD", "--in-interface %s -j ACCEPT" % bridge)
        filt.add_rule("FORWARD", "--out-interface %s -j ACCEPT" % bridge)
        self.applied["bridges"].append({"bridge": bridge, "interface": iface, "gateway": want})

    def _pid_alive_with(self, pidfile, needle):
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmdline = f.read().decode(errors="replace")
            return pid if needle in cmdline else None
        except (OSError, ValueError):
            return None

    # linux_net.update_dhcp + _add_dnsmasq_accept_rules
    def update_dhcp(self, net, fixed_ips):
        bridge = net["bridge"]
        os.makedirs(self.networks_path, exist_ok=True)
        conf = self.dhcp_file(bridge, "conf")
        hosts = ["%s,%s.novalocal,%s" % (f["mac"], f["hostname"], f["address"])
                 for f in fixed_ips if f.get("bridge", bridge) == bridge]
        with open(conf, "w") as f:
            f.write("\n".join(hosts) + ("\n" if hosts else ""))
        filt = self.ipt.ipv4["filter"]
        for port in (67, 53):
            for proto in ("udp", "tcp"):
                filt.add_rule("INPUT", "-i %s -p %s -m %s --dport %s -j ACCEPT"
                              % (bridge, proto, proto, port))
        pidfile = self.dhcp_file(bridge, "pid")
        pid = self._pid_alive_with(pidfile, conf)
        if pid:
            self.runner.run(["kill", "-HUP", str(pid)])
            self.applied["dnsmasq"].append({"bridge": bridge, "pid": pid, "action": "HUP"})
            return
        lease_max = ipaddress.ip_network(net["cidr"]).num_addresses
        cmd = ["dnsmasq", "--strict-order", "--bind-interfaces", "--conf-file=",
               "--pid-file=%s" % pidfile,
               "--listen-address=%s" % net["gateway"],
               "--except-interface=lo",
               "--dhcp-range=set:%s,%s,static,%s,120s" % (net.get("label", "private"),
                                                        net["dhcp_start"], net["netmask"]),
               "--dhcp-lease-max=%d" % lease_max,
               "--dhcp-hostsfile=%s" % conf,
               "--leasefile-ro"]
        self.runner.run(cmd)   # dnsmasq daemonizes: the parent exits, the daemon outlives us
        self.applied["dnsmasq"].append({"bridge": bridge, "cmd": cmd, "pid_file": pidfile,
                                        "action": "start"})

    # linux_net.update_ra
    def update_ra(self, net):
        bridge = net["bridge"]
        if not net.get("cidr_v6"):
            return
        conf = self.dhcp_file(bridge, "ra")
        with open(conf, "w") as f:
            f.write("interface %s\n{\n   AdvSendAdvert on;\n   MinRtrAdvInterval 3;\n"
                    "   MaxRtrAdvInterval 10;\n   prefix %s\n   {\n        AdvOnLink on;\n"
                    "        AdvAutonomous on;\n   };\n};\n" % (bridge, net["cidr_v6"]))
        pidfile = self.dhcp_file(bridge, "pid.radvd")
        pid = self._pid_alive_with(pidfile, conf)
        if pid:
            self.runner.run(["kill", str(pid)])
        cmd = ["radvd", "-C", conf, "-p", pidfile]
        self.runner.run(cmd)
        self.applied["radvd"].append({"bridge": bridge, "cmd": cmd, "pid_file": pidfile})

    # floating: bind_floating_ip + ensure_floating_forward (deferred apply)
    def add_floating(self, floating, fixed, interface=None):
        dev = interface or self.public_interface
        # rc 2: address already there (nova's check_exit_code=[0, 2, 254])
        self.runner.run(["ip", "addr", "add", "%s/32" % floating, "dev", dev],
                        ok_codes=(0, 2, 254))
        for chain, rule in floating_forward_rules(floating, fixed):
            self.ipt.ipv4["nat"].add_rule(chain, rule)
        self.applied["floating"].append({"floating": floating, "fixed": fixed, "dev": dev})

    def remove_floating(self, floating, fixed, interface=None):
        dev = interface or self.public_interface
        for chain, rule in floating_forward_rules(floating, fixed):
            self.ipt.ipv4["nat"].remove_rule(chain, rule)
        self.ipt.apply()
        self.runner.run(["ip", "addr", "del", "%s/32" % floating, "dev", dev],
                        ok_codes=(0, 2, 254))
        self.applied["floating"] = [f for f in self.applied["floating"]
                                    if f["floating"] != floating]

    def associate(self, floating, fixed, interface=None):
        self.add_floating(floating, fixed, interface)
        self.ipt.apply()
