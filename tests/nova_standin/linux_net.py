"""nova's own network code (nova 17.0.13, `nova.network.linux_net` and `nova.network.l3`), set up
for the stand-in: every bridge, address, iptables/ebtables rule and dnsmasq the stand-in makes is
made by nova's functions. What the stand-in supplies instead of nova:

- `nova.utils.execute` -> `Runner.execute`: a plain subprocess, no sudo or rootwrap; it sleeps
  `command_cost` before every command nova runs with `run_as_root=True` (rootwrap's cost) and logs
  every command with its timing; two adaptations to this machine (`Runner._compat`): brctl 1.7's
  wording, ebtables without `--logical-in` where the kernel refuses it.
- `objects.FixedIPList.get_by_network` (the only database call on these paths, in
  `linux_net.update_dhcp`) -> `FixedIPList`: simple fixed-IP objects with nova's attributes, from
  the JSON database.
- nova's manager (`FlatDHCPManager.init_host`, `FloatingIP._associate_floating_ip` /
  `_disassociate_floating_ip`) -> `LinuxNet`: the same calls in the same order, on network dicts
  from the JSON database.
- configuration: nova's `CONF`, overridden from the flagfile (`configure`), `binary_name`
  `nova-network` (the chain prefix) and the iptables manager rebuilt with it, `dhcpbridge`
  pointing at dhcpbridge.py beside this file, `[oslo_concurrency] lock_path` per node.
"""
import ipaddress
import os
import subprocess
import tempfile
import time
import types
import warnings

BINARY_NAME = "nova-network"   # nova: basename of the running binary, [:16]
HERE = os.path.dirname(os.path.abspath(__file__))
DHCPBRIDGE = os.path.join(HERE, "dhcpbridge.py")

# nova.conf options the stand-in passes from the flagfile to nova's CONF (DEFAULT group);
# oslo.config converts the strings to each option's type.
PASSED_FLAGS = ("host", "my_ip", "routing_source_ip", "public_interface", "flat_interface",
                "flat_network_bridge", "dhcp_domain", "dhcp_lease_time", "metadata_port",
                "send_arp_for_ha", "send_arp_for_ha_count", "share_dhcp_address",
                "dnsmasq_config_file", "iptables_drop_action", "force_snat_range", "dmz_cidr",
                "forward_bridge_interface", "dns_server", "update_dns_entries")

NOVA = types.SimpleNamespace(ln=None, l3=None, conf=None, processutils=None)


def load_nova():
    """Imports nova's network code (about 1 s: the stand-in counts it in its start-up delay)."""
    if NOVA.ln is None:
        warnings.filterwarnings("ignore", message="(?s).*[Ee]ventlet")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=SyntaxWarning)
        from oslo_concurrency import processutils

        import nova.conf
        from nova.network import l3, linux_net
        NOVA.ln, NOVA.l3, NOVA.conf = linux_net, l3, nova.conf.CONF
        NOVA.processutils = processutils
    return NOVA


def errors():
    """What a failed network step raises."""
    n = load_nova()
    from nova import exception
    return (n.processutils.ProcessExecutionError, exception.NovaException, OSError, ValueError)


class Runner:
    """nova's `utils.execute`, without rootwrap: runs the command, returns (stdout, stderr),
    raises processutils.ProcessExecutionError on an exit code nova does not accept."""

    def __init__(self, command_cost=0.05, dry=False):
        self.cost = command_cost
        self.dry = dry
        self.log = []
        self.last_restore = {}     # iptables-restore / ip6tables-restore: the last input
        self.no_logical_in = False  # the kernel refused ebtables' --logical-in once (_compat)

    def execute(self, *cmd, **kw):
        cmd = [str(c) for c in cmd]
        root = bool(kw.get("run_as_root"))
        check = kw.get("check_exit_code", True)
        if check is True:
            ok = (0,)
        elif check is False:
            ok = None
        elif isinstance(check, int):
            ok = (check,)
        else:
            ok = tuple(check)
        data = kw.get("process_input")
        if isinstance(data, str):
            data = data.encode()
        env = None
        if kw.get("addl_env"):
            env = dict(os.environ, **kw["addl_env"])
        if cmd[0].endswith("tables-restore") and data is not None:
            self.last_restore[cmd[0]] = data.decode(errors="replace")
        attempts = max(1, int(kw.get("attempts", 1)))
        instead_of = None
        if self.no_logical_in and cmd[0] == "ebtables" and "--logical-in" in cmd:
            i = cmd.index("--logical-in")
            instead_of = "--logical-in %s (kernel: not supported)" % cmd[i + 1]
            cmd = cmd[:i] + cmd[i + 2:]
        for attempt in range(attempts):
            if root and self.cost > 0:
                time.sleep(self.cost)
            t0 = time.time()
            if self.dry:
                self.log.append({"cmd": cmd, "rc": None, "skipped": True, "t": t0, "root": root})
                return "", ""
            rc, out, err = self._run(cmd, data, env)
            entry = {"cmd": cmd, "rc": rc, "t": t0, "root": root,
                     "duration": round(time.time() - t0, 4)}
            if instead_of:
                entry["instead_of"] = instead_of
            self.log.append(entry)
            rc, out, err = self._compat(cmd, rc, out, err, data, env, entry)
            if ok is None or rc in ok:
                return out, err
            if attempt + 1 < attempts:
                time.sleep(0.05)
        raise NOVA.processutils.ProcessExecutionError(
            stdout=out, stderr=err, exit_code=rc, cmd=" ".join(cmd))

    def _compat(self, cmd, rc, out, err, data, env, entry):
        """This machine's tools and kernel against what nova 17 was written for (README):
        - bridge-utils 1.7 says "can't add it to bridge" where 1.5/1.6 said "can't enslave it
          to bridge", the text nova's ensure_bridge compares to accept a port already in it;
        - ebtables-nft's `--logical-in BRIDGE` needs the kernel's nft bridge meta support
          (CONFIG_NFT_BRIDGE_META, absent here, and no legacy ebtables): refused with
          "Operation not supported", the rule is run again without it (one bridge per segment
          in the lab: the same frames match)."""
        if cmd[0] == "brctl" and "can't add it to bridge" in err:
            entry["stderr_rewritten"] = err
            err = err.replace("can't add it to bridge", "can't enslave it to bridge")
        elif (cmd[0] == "ebtables" and rc != 0 and "--logical-in" in cmd
              and ("Operation not supported" in err or "-D" in cmd)):
            # A `-D` with it fails with another message (no rule matches what the kernel
            # cannot express): run it again without too, or the rule ensure_ebtables_rules
            # deletes before its `-I` stays, and every start adds a copy.
            i = cmd.index("--logical-in")
            again = cmd[:i] + cmd[i + 2:]
            if "Operation not supported" in err:
                self.no_logical_in = True     # later ebtables calls go without it at once
            t0 = time.time()
            rc, out, err = self._run(again, data, env)
            self.log.append({"cmd": again, "rc": rc, "t": t0, "root": entry["root"],
                             "duration": round(time.time() - t0, 4),
                             "instead_of": "--logical-in %s (kernel: not supported)" % cmd[i + 1]})
        return rc, out, err

    @staticmethod
    def _run(cmd, data, env):
        # Output to files, not pipes: a daemon the command starts (dnsmasq and its dhcp-script
        # helper) may keep inherited descriptors open, and we wait for the command alone.
        with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
            try:
                p = subprocess.run(cmd, input=data, stdout=fo, stderr=fe, env=env, timeout=60,
                                   stdin=None if data is not None else subprocess.DEVNULL)
            except OSError as e:       # not installed: nova's processutils raises too
                return 127, "", str(e)
            fo.seek(0)
            fe.seek(0)
            return (p.returncode, fo.read().decode(errors="replace"),
                    fe.read().decode(errors="replace"))


def lock_path(flags, networks_path):
    """`[oslo_concurrency] lock_path`: the flag `lock_path`, else `locks` beside networks_path
    (per node: a powered-off node's held lock must not stop the other's nova)."""
    return flags.get("lock_path") or os.path.join(
        os.path.dirname(os.path.abspath(networks_path)), "locks")


def configure(flags, runner, networks_path, use_ipv6, flagfile_path=None):
    """nova's CONF from the flagfile, nova's execute replaced, binary_name set and the
    iptables manager rebuilt with it. Returns nova's linux_net module."""
    n = load_nova()
    conf = n.conf
    if conf._args is None:
        conf(args=[], project="nova", default_config_files=[], default_config_dirs=[])
    for key in PASSED_FLAGS:
        value = flags.get(key)
        if value is not None:
            conf.set_override(key, value.split(",") if key in (
                "force_snat_range", "dmz_cidr", "forward_bridge_interface", "dns_server")
                else value)
    conf.set_override("networks_path", os.path.abspath(networks_path))
    conf.set_override("use_ipv6", use_ipv6)
    # The stand-in's own default (nova's is my_ip, different on each server): the VIP.
    conf.set_override("metadata_host", flags.get("metadata_host",
                                                 flags.get("routing_source_ip", "127.0.0.1")))
    conf.set_override("dhcpbridge", DHCPBRIDGE)
    if flagfile_path:
        conf.set_override("dhcpbridge_flagfile", [os.path.abspath(flagfile_path)])
    conf.set_override("fake_network", False)
    conf.set_override("lock_path", lock_path(flags, networks_path), group="oslo_concurrency")
    from nova import utils
    utils.execute = runner.execute
    ln = n.ln
    ln.binary_name = BINARY_NAME
    ln.iptables_manager = ln.IptablesManager()
    ln.objects = types.SimpleNamespace(FixedIPList=FixedIPList)
    return ln


# ---------------------------------------------------------------------------------------------
# The database side: network dicts and fixed-IP objects with nova's attributes
# ---------------------------------------------------------------------------------------------
def network_ref(net, index, bridge_default):
    """A nova network (the keys linux_net and l3 read) from a database network."""
    cidr = ipaddress.ip_network(net["cidr"])
    ref = {"id": index, "uuid": "standin-net-%d" % index, "label": net.get("label", "private"),
           "bridge": net.get("bridge") or bridge_default,
           "bridge_interface": net.get("bridge_interface"), "cidr": str(cidr),
           "gateway": net["gateway"], "broadcast": net["broadcast"], "netmask": net["netmask"],
           "dhcp_start": net["dhcp_start"], "cidr_v6": net.get("cidr_v6"),
           "gateway_v6": net.get("gateway_v6"), "multi_host": False, "share_address": False,
           "enable_dhcp": True, "vlan": None, "mtu": None, "dns1": None, "dns2": None,
           "host": None}
    ref["dhcp_server"] = net.get("dhcp_server") or net["gateway"]
    return ref


class FixedIP:
    """nova.objects.FixedIP, the attributes linux_net reads."""

    def __init__(self, row, vif_id):
        self.address = row["address"]
        self.allocated = row.get("allocated", True)
        self.leased = bool(row.get("leased", False))
        self.default_route = True
        self.virtual_interface_id = vif_id
        self.virtual_interface = types.SimpleNamespace(address=row["mac"], id=vif_id)
        self.instance = types.SimpleNamespace(hostname=row["hostname"])


class FixedIPList:
    """nova.objects.FixedIPList.get_by_network, answered from the JSON database."""
    rows = []            # the database's fixed_ips, set by LinuxNet before nova reads them

    @classmethod
    def get_by_network(cls, context, network, host=None):
        return [FixedIP(r, i) for i, r in enumerate(cls.rows, 1)
                if r.get("bridge", network["bridge"]) == network["bridge"]]


# ---------------------------------------------------------------------------------------------
# nova's manager, the network part: the calls FlatDHCPManager and FloatingIP make
# ---------------------------------------------------------------------------------------------
class LinuxNet:
    def __init__(self, flags, runner, networks_path, use_ipv6=False, flagfile_path=None):
        self.flags = flags
        self.runner = runner
        self.networks_path = networks_path
        self.use_ipv6 = use_ipv6
        self.ln = configure(flags, runner, networks_path, use_ipv6, flagfile_path)
        self.l3 = NOVA.l3.LinuxNetL3()
        self.networks = []
        self.applied = {"networks": [], "floating": [], "dnsmasq": [], "radvd": [],
                        "warnings": []}

    @property
    def ipt(self):
        return self.ln.iptables_manager

    def _load(self, d):
        bridge = self.flags.get("flat_network_bridge", "br100")
        self.networks = [network_ref(net, i, bridge) for i, net in enumerate(d["networks"], 1)]
        FixedIPList.rows = list(d["fixed_ips"])
        # nova's LinuxBridgeInterfaceDriver.plug: `CONF.flat_interface or
        # network['bridge_interface']`: the flag, when set, wins for every flat network.
        flat = self.flags.get("flat_interface")
        for net in self.networks:
            if flat and net["bridge_interface"] and net["bridge_interface"] != flat:
                self.applied["warnings"].append(
                    "network %s (%s): bridge_interface %s ignored, nova plugs %s onto "
                    "flat_interface %s" % (net["label"], net["cidr"], net["bridge_interface"],
                                           net["bridge"], flat))

    def network_for(self, fixed):
        """The network of a fixed IP (nova: fixed_ip.network)."""
        addr = ipaddress.ip_address(fixed)
        for net in self.networks:
            if addr in ipaddress.ip_network(net["cidr"]):
                return net
        if not self.networks:
            raise ValueError("no network for fixed IP %s" % fixed)
        return self.networks[0]

    def interface(self, interface=None):
        # nova: CONF.public_interface or floating_ip.interface
        return NOVA.conf.public_interface or interface

    def init_host(self, d):
        """FlatDHCPManager.init_host: iptables deferred, l3 initialize (SNAT per network,
        metadata IP and forward), per network _setup_network_on_host, the floating IPs, then
        one iptables apply."""
        self._load(d)
        ln = self.ln
        ln.iptables_manager.defer_apply_on()
        self.l3.initialize(fixed_range=False, networks=self.networks)
        for net in self.networks:
            self.setup_network_on_host(net)
        for fl in d["floating_ips"]:
            if fl.get("fixed_address"):
                self.add_floating(fl["address"], fl["fixed_address"], fl.get("interface"))
        ln.iptables_manager.defer_apply_off()

    def setup_network_on_host(self, net):
        """FlatDHCPManager._setup_network_on_host (shared DHCP address: the gateway)."""
        ln = self.ln
        is_ext = net["dhcp_server"] is not None and net["dhcp_server"] != net["gateway"]
        self.l3.initialize_network(net["cidr"], is_ext)
        self.l3.initialize_gateway(net)          # plug -> ensure_bridge, gateway device
        dev = ln.get_dev(net)
        ln.update_dhcp(None, dev, net)           # hosts file, restart_dhcp (dnsmasq or HUP)
        self.applied["networks"].append({"bridge": dev, "cidr": net["cidr"],
                                         "dhcp_server": net["dhcp_server"]})
        self.applied["dnsmasq"].append({"bridge": dev, "pid_file": ln._dhcp_file(dev, "pid"),
                                        "pid": ln._dnsmasq_pid_for(dev)})
        if self.use_ipv6 and net.get("cidr_v6"):
            ln.update_ra(None, dev, net)
            self.applied["radvd"].append({"bridge": dev, "pid_file": ln._ra_file(dev, "pid")})
            # nova then stores the bridge's link-local address as gateway_v6 (no DB here)

    def add_floating(self, floating, fixed, interface=None):
        """l3 add_floating_ip: ensure_floating_forward (+ ebtables), bind_floating_ip."""
        dev = self.interface(interface)
        self.l3.add_floating_ip(floating, fixed, dev, self.network_for(fixed))
        self.applied["floating"] = [f for f in self.applied["floating"]
                                    if f["floating"] != floating]
        self.applied["floating"].append({"floating": floating, "fixed": fixed, "dev": dev})

    def remove_floating(self, floating, fixed, interface=None):
        """l3 remove_floating_ip: unbind_floating_ip, remove_floating_forward (+ ebtables),
        clean_conntrack."""
        dev = self.interface(interface)
        self.l3.remove_floating_ip(floating, fixed, dev, self.network_for(fixed))
        self.applied["floating"] = [f for f in self.applied["floating"]
                                    if f["floating"] != floating]

    def associate(self, floating, fixed, interface=None):
        self.add_floating(floating, fixed, interface)

