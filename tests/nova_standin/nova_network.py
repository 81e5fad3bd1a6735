#!/usr/bin/env python3
"""Stand-in nova-network: FlatDHCPManager start-up by nova 17.0.13's own linux_net and l3 driver
(linux_net.py here), an RPC server on oslo.messaging, a JSON database.

  nova_network.py --flagfile=/etc/nova/nova.conf --host=<shared host> [--db FILE]
                  [--record FILE] [--startup-delay 2] [--command-cost 0.05]
                  [--node NAME] [--skip-network] [--skip-rpc]

See README.md in this directory. SIGTERM/SIGINT: exit 0 at once (2011 nova-network had no
SIGTERM handler and died on it), leaving every piece of network state behind; with
--graceful-stop, oslo.messaging's server.stop()/wait() first.
"""
import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import warnings

warnings.filterwarnings("ignore", message="(?s).*[Ee]ventlet")
warnings.filterwarnings("ignore", category=DeprecationWarning)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import db as standin_db          # noqa: E402
import flagfile                  # noqa: E402
import linux_net                 # noqa: E402

T0 = time.time()


def log(msg, **kw):
    line = "nova-network[%d] %.3f %s" % (os.getpid(), time.time() - T0, msg)
    if kw:
        line += " " + json.dumps(kw, sort_keys=True)
    print(line, flush=True)


def netns_name():
    """Name of the network namespace we run in (as `ip netns identify`), or ''."""
    try:
        me = os.stat("/proc/self/ns/net").st_ino
        for n in sorted(os.listdir("/run/netns")):
            try:
                if os.stat(os.path.join("/run/netns", n)).st_ino == me:
                    return n
            except OSError:
                pass
    except OSError:
        pass
    return ""


class Recorder:
    """JSON lines, one per handled message, flushed and fsynced before the handler returns."""

    def __init__(self, path, host, node):
        self.path = path
        self.host = host
        self.node = node
        self.lock = threading.Lock()
        self.f = open(path, "a", encoding="utf-8") if path else None

    def write(self, entry):
        if self.f is None:
            return
        line = json.dumps(entry, sort_keys=True, default=str) + "\n"
        with self.lock:
            self.f.write(line)
            self.f.flush()
            os.fsync(self.f.fileno())

    def message(self, method, args):
        self.write({"time": time.time(), "host": self.host, "node": self.node,
                    "pid": os.getpid(), "method": method, "args": args})

    def event(self, name, **kw):
        e = {"time": time.time(), "host": self.host, "node": self.node, "pid": os.getpid(),
             "event": name}
        e.update(kw)
        self.write(e)


class NetworkState:
    """The DB (JSON file or in-memory default) plus the live linux_net, behind one lock."""

    def __init__(self, flags, args, runner, networks_path, use_ipv6, flagfile_path=None):
        self.flags = flags
        self.db_path = args.db or flags.get("standin_db")
        self.lock = threading.Lock()
        self.net = linux_net.LinuxNet(flags, runner, networks_path, use_ipv6, flagfile_path)
        self.skip_network = args.skip_network

    def load(self):
        if self.db_path:
            return standin_db.load(self.db_path)
        fr = self.flags.get("fixed_range", "10.0.0.0/24")
        d = standin_db.empty()
        d["networks"].append(standin_db.network_from_cidr(
            fr, self.flags.get("flat_network_bridge", "br100"),
            cidr_v6=self.flags.get("fixed_range_v6") if self.net.use_ipv6 else None))
        return d

    def init_host(self):
        """FlatDHCPManager.init_host, by nova's linux_net and l3 driver (linux_net.LinuxNet):
        iptables applied once at the end (nova's deferred apply)."""
        d = self.load()
        self.net.init_host(d)
        return d

    def _update_db(self, fn):
        if not self.db_path:
            return None
        with standin_db.locked(self.db_path) as d:
            return fn(d)

    def associate(self, floating, fixed, interface=None):
        with self.lock:
            def upd(d):
                old = None
                for fl in d["floating_ips"]:
                    if fl["address"] == floating:
                        old = fl.get("fixed_address"), fl.get("interface")
                        fl["fixed_address"] = fixed
                        if interface:
                            fl["interface"] = interface
                        return old
                d["floating_ips"].append({"address": floating, "fixed_address": fixed,
                                          "interface": interface})
                return None
            old = self._update_db(upd)
            if self.skip_network:
                return {"db": bool(self.db_path), "network": "skipped"}
            if old and old[0] and old[0] != fixed:
                self.net.remove_floating(floating, old[0], old[1])
            self.net.associate(floating, fixed, interface or (old[1] if old else None))
            return {"db": bool(self.db_path), "network": "applied"}

    def disassociate(self, floating):
        with self.lock:
            def upd(d):
                for fl in d["floating_ips"]:
                    if fl["address"] == floating:
                        old = fl.get("fixed_address"), fl.get("interface")
                        fl["fixed_address"] = None
                        return old
                return None
            old = self._update_db(upd)
            if old is None:   # no DB: look at what we applied
                for f in self.net.applied["floating"]:
                    if f["floating"] == floating:
                        old = f["fixed"], f["dev"]
            if self.skip_network:
                return {"db": bool(self.db_path), "network": "skipped"}
            if old and old[0]:
                self.net.remove_floating(floating, old[0], old[1])
                return {"db": bool(self.db_path), "network": "applied"}
            return {"db": bool(self.db_path), "network": "not associated"}


def make_endpoints(recorder, state, handle_delay=0.0):
    import oslo_messaging

    class NetworkAPI:
        """Real methods (nova's network rpcapi names, with and without the leading '_')."""
        target = oslo_messaging.Target(version="1.999")

        def ping(self, ctxt, seq=None, **kw):
            recorder.message("ping", dict(kw, seq=seq))
            return {"pong": seq, "pid": os.getpid(), "node": recorder.node}

        def record(self, ctxt, seq=None, **kw):
            if handle_delay > 0:
                time.sleep(handle_delay)
            recorder.message("record", dict(kw, seq=seq))
            return seq

        def associate_floating_ip(self, ctxt, floating_address, fixed_address,
                                  interface=None, **kw):
            res = state.associate(floating_address, fixed_address, interface)
            recorder.message("associate_floating_ip",
                             dict(kw, floating_address=floating_address,
                                  fixed_address=fixed_address, interface=interface,
                                  result=res))
            return res

        _associate_floating_ip = associate_floating_ip

        def disassociate_floating_ip(self, ctxt, floating_address, **kw):
            res = state.disassociate(floating_address)
            recorder.message("disassociate_floating_ip",
                             dict(kw, floating_address=floating_address, result=res))
            return res

        _disassociate_floating_ip = disassociate_floating_ip

    class Generic:
        """Any other method name: recorded, nothing else."""
        target = oslo_messaging.Target(version="1.999")

        def __getattr__(self, name):
            if name.startswith("__") or name.startswith("oslo_") or name == "target":
                raise AttributeError(name)

            def handler(ctxt, **kw):
                recorder.message(name, kw)
                return None
            return handler

    return [NetworkAPI(), Generic()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flagfile", required=True)
    p.add_argument("--host", help="the shared host name (overrides the flagfile's --host)")
    p.add_argument("--db", help="JSON database (db.py); default: flag standin_db, else a "
                   "network from fixed_range with no VMs or floating IPs")
    p.add_argument("--record", help="JSON lines of handled messages (default: flag "
                   "standin_record, else none)")
    p.add_argument("--startup-delay", type=float, default=None,
                   help="seconds before touching anything (default 2; flag standin_startup_delay)")
    p.add_argument("--command-cost", type=float, default=None,
                   help="seconds slept before each command (default 0.05; flag "
                   "standin_command_cost)")
    p.add_argument("--node", help="label written in every record (default: netns name, "
                   "else hostname)")
    p.add_argument("--skip-network", action="store_true",
                   help="touch no interface, iptables, dnsmasq (RPC-only development mode)")
    p.add_argument("--skip-rpc", action="store_true",
                   help="serve no RPC: set up the network, then idle until SIGTERM")
    p.add_argument("--ack-after-handle", action="store_true",
                   help="ack each message after its handler returned (at-least-once; default "
                   "is oslo.messaging's ack-before-dispatch, at-most-once); flag "
                   "standin_ack_after_handle")
    p.add_argument("--graceful-stop", action="store_true",
                   help="on SIGTERM, stop the oslo.messaging server gracefully (server.stop() + "
                   "wait()) instead of exiting at once like 2011 nova-network did; see README: "
                   "this loses the messages acked during the stop")
    p.add_argument("--handle-delay", type=float, default=0.0,
                   help="seconds each `record` handler sleeps before recording (widens the "
                   "ack-to-record window: shows what a kill loses)")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)

    flags = flagfile.load_flags(args.flagfile)
    host = args.host or flags.get("host") or socket.gethostname()
    startup_delay = (args.startup_delay if args.startup_delay is not None
                     else float(flags.get("standin_startup_delay", 2.0)))
    command_cost = (args.command_cost if args.command_cost is not None
                    else float(flags.get("standin_command_cost", 0.05)))
    record_path = args.record or flags.get("standin_record")
    node = args.node or netns_name() or socket.gethostname()
    state_path = flags.get("state_path", "/var/lib/nova")
    networks_path = flags.get("networks_path", os.path.join(state_path, "networks"))
    use_ipv6 = flags.get_bool("use_ipv6", False)
    ack_after = args.ack_after_handle or flags.get_bool("standin_ack_after_handle", False)
    graceful = args.graceful_stop or flags.get_bool("standin_graceful_stop", False)

    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log("starting", startup_delay=startup_delay, command_cost=command_cost, host=host,
        node=node, flagfile=os.path.abspath(args.flagfile), networks_path=networks_path,
        use_ipv6=use_ipv6, skip_network=args.skip_network, skip_rpc=args.skip_rpc)

    stop = threading.Event()
    signame = {}

    def on_signal(signum, _frame):
        signame["sig"] = signal.Signals(signum).name
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    recorder = Recorder(record_path, host, node)

    # nova's imports + DB connection: our own imports count towards the delay
    linux_net.load_nova()
    if not args.skip_rpc:
        import oslo_messaging  # noqa: F401
        import transport  # noqa: F401
    if stop.wait(max(0.0, startup_delay - (time.time() - T0))):
        log("signal during start-up: exit", signal=signame.get("sig"))
        return 0

    runner = linux_net.Runner(command_cost, dry=args.skip_network)
    state = NetworkState(flags, args, runner, networks_path, use_ipv6, args.flagfile)
    t_net = time.time()
    if not args.skip_network:
        try:
            d = state.init_host()
        except linux_net.errors() as e:
            log("init_host failed", error=str(e))
            recorder.event("init_host_failed", error=str(e))
            return 1
        for w in state.net.applied["warnings"]:
            log("warning: " + w)
        applied = {"host": host, "node": node, "pid": os.getpid(), "time": time.time(),
                   "duration_s": round(time.time() - t_net, 3), "command_cost": command_cost,
                   "commands": runner.log, "applied": state.net.applied,
                   "iptables_restore": runner.last_restore}
        applied_path = os.path.join(networks_path, "nova-standin-applied.json")
        with open(applied_path, "w") as f:
            json.dump(applied, f, indent=1, default=str)
        log("init_host done", duration_s=round(time.time() - t_net, 3),
            commands=len(runner.log), bridges=len(state.net.applied["networks"]),
            floating=len(state.net.applied["floating"]), networks=len(d["networks"]),
            applied=applied_path)
    else:
        log("network setup skipped (--skip-network)")
    recorder.event("init_host_done", skipped=args.skip_network,
                   duration_s=round(time.time() - t_net, 3), commands=len(runner.log))

    server = None
    if not args.skip_rpc:
        import oslo_messaging
        import transport as standin_transport
        conf, transport, url = standin_transport.make_transport(flags)
        target = oslo_messaging.Target(exchange=standin_transport.EXCHANGE,
                                       topic=standin_transport.TOPIC, server=host)
        kw = {}
        if ack_after:
            import ackmode
            kw["server_cls"] = ackmode.enable()
        server = oslo_messaging.get_rpc_server(
            transport, target, make_endpoints(recorder, state, args.handle_delay),
            executor="threading", access_policy=oslo_messaging.LegacyRPCAccessPolicy, **kw)
        t_rpc = time.time()
        server.start()
        log("serving RPC", exchange=standin_transport.EXCHANGE, topic=standin_transport.TOPIC,
            server=host, queue="%s.%s" % (standin_transport.TOPIC, host),
            url=standin_transport.redact(url), connect_s=round(time.time() - t_rpc, 3),
            amqp_durable_queues=conf.oslo_messaging_rabbit.amqp_durable_queues,
            amqp_auto_delete=conf.oslo_messaging_rabbit.amqp_auto_delete,
            ack="after-handle" if ack_after else "before-dispatch (oslo default)")
        recorder.event("rpc_ready", startup_s=round(time.time() - T0, 3))
    else:
        log("RPC skipped (--skip-rpc): idling until SIGTERM")
    log("ready", startup_s=round(time.time() - T0, 3))

    while not stop.wait(3600):
        pass
    log("stopping: leaving network state behind", signal=signame.get("sig"),
        graceful=graceful)
    if server is not None and graceful:
        server.stop()
        waiter = threading.Thread(target=server.wait, daemon=True)
        waiter.start()
        waiter.join(10)
    recorder.event("stopped", signal=signame.get("sig"))
    log("exit")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
