#!/usr/bin/env python3
"""Cast a numbered stream of `record` RPC messages to nova-network (exchange nova, topic network,
server <host>), as nova-compute/nova-api would, and log each cast.

  cast.py --flagfile=nova.conf --host=<shared host> --log casts.jsonl
          [--interval 0.02] [--duration 10 | --count N] [--start-seq 1] [--method record]

Runs until --duration/--count is reached or SIGTERM/SIGINT. A line {"seq", "time", "done"} is
appended (flushed) after each cast returns; a cast interrupted by the signal is not logged.
Casts block while the broker is unreachable (oslo.messaging retries), so the stream pauses
instead of losing seqs. Summary JSON on stdout at the end.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
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
    p.add_argument("--log", required=True, help="JSON lines of what was cast")
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--duration", type=float, default=None)
    p.add_argument("--count", type=int, default=None)
    p.add_argument("--start-seq", type=int, default=1)
    p.add_argument("--method", default="record")
    a = p.parse_args(argv)

    flags = flagfile.load_flags(a.flagfile)
    host = a.host or flags.get("host")
    conf, transport, url = standin_transport.make_transport(flags)
    target = oslo_messaging.Target(exchange=standin_transport.EXCHANGE,
                                   topic=standin_transport.TOPIC, server=host)
    client = oslo_messaging.get_rpc_client(transport, target)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    out = open(a.log, "a", encoding="utf-8")
    seq = a.start_seq
    n = 0
    t0 = time.time()
    next_t = t0
    max_cast = 0.0
    while not stop.is_set():
        if a.count is not None and n >= a.count:
            break
        if a.duration is not None and time.time() - t0 >= a.duration:
            break
        t = time.time()
        client.cast({}, a.method, seq=seq)
        done = time.time()
        max_cast = max(max_cast, done - t)
        out.write(json.dumps({"seq": seq, "time": t, "done": done, "host": host}) + "\n")
        out.flush()
        seq += 1
        n += 1
        next_t += a.interval
        delay = next_t - time.time()
        if delay > 0:
            stop.wait(delay)
        else:
            next_t = time.time()
    out.close()
    print(json.dumps({"cast": n, "first_seq": a.start_seq, "last_seq": seq - 1,
                      "duration_s": round(time.time() - t0, 3),
                      "max_cast_s": round(max_cast, 4), "host": host,
                      "url": standin_transport.redact(url)}), flush=True)
    transport.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
