#!/usr/bin/env python3
"""One RPC to the stand-in (or a real nova-network): call (waits for the reply) or --cast.

  rpc_call.py --flagfile=nova.conf --host=<shared host> [--cast] [--timeout 10]
              METHOD [key=value...]
e.g. rpc_call.py --flagfile=... --host=lab-network associate_floating_ip \
        floating_address=10.2.3.105 fixed_address=10.0.0.3
Values are JSON if they parse (numbers, null, true), else strings. Prints the reply as JSON.
"""
import argparse
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="(?s).*[Ee]ventlet")
warnings.filterwarnings("ignore", category=DeprecationWarning)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import oslo_messaging      # noqa: E402
import flagfile            # noqa: E402
import transport as standin_transport  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flagfile", required=True)
    p.add_argument("--host")
    p.add_argument("--cast", action="store_true")
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("method")
    p.add_argument("kwargs", nargs="*")
    a = p.parse_args(argv)
    kw = {}
    for item in a.kwargs:
        k, v = item.split("=", 1)
        try:
            kw[k] = json.loads(v)
        except ValueError:
            kw[k] = v
    flags = flagfile.load_flags(a.flagfile)
    conf, transport, _url = standin_transport.make_transport(flags)
    target = oslo_messaging.Target(exchange=standin_transport.EXCHANGE,
                                   topic=standin_transport.TOPIC,
                                   server=a.host or flags.get("host"))
    client = oslo_messaging.get_rpc_client(transport, target, timeout=a.timeout)
    try:
        if a.cast:
            client.cast({}, a.method, **kw)
            res = {"cast": a.method}
        else:
            res = client.call({}, a.method, **kw)
    except oslo_messaging.MessagingTimeout:
        print(json.dumps({"error": "timeout", "method": a.method}))
        return 1
    print(json.dumps(res, default=str))
    transport.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
