#!/usr/bin/env python3
"""Compare a cast log (cast.py) with the record files of one or more stand-ins.

  check.py --cast casts.jsonl RECORD [RECORD...] [--method record] [--min-seq N] [--max-seq N]

Prints JSON: cast, handled (distinct cast seqs handled), lost (count + first seqs), duplicated
(seqs handled more than once), unexpected (handled, never logged as cast: e.g. a cast cut by
SIGTERM), per node (node/pid -> count and seq ranges), and the largest gap between consecutive
handled messages (time, and the seqs around it). Exit 1 if any cast seq was lost.
"""
import argparse
import collections
import itertools
import json
import sys


def read_jsonl(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                print("%s:%d: torn line ignored" % (path, i), file=sys.stderr)
    return out


def ranges(seqs):
    seqs = sorted(set(seqs))
    out = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cast", action="append", required=True, help="cast log (repeatable)")
    p.add_argument("records", nargs="+")
    p.add_argument("--method", default="record")
    p.add_argument("--min-seq", type=int, default=None)
    p.add_argument("--max-seq", type=int, default=None)
    a = p.parse_args(argv)

    def in_window(s):
        return ((a.min_seq is None or s >= a.min_seq) and
                (a.max_seq is None or s <= a.max_seq))

    cast = {}
    for path in a.cast:
        for e in read_jsonl(path):
            if in_window(e["seq"]):
                cast[e["seq"]] = e
    handled = collections.defaultdict(list)     # seq -> [record]
    events = []
    for path in a.records:
        for e in read_jsonl(path):
            if "event" in e:
                events.append(e)
                continue
            if e.get("method") != a.method:
                continue
            seq = (e.get("args") or {}).get("seq")
            if seq is None or not in_window(seq):
                continue
            e["_file"] = path
            handled[seq].append(e)

    lost = sorted(s for s in cast if s not in handled)
    dup = sorted(s for s, v in handled.items() if len(v) > 1)
    unexpected = sorted(s for s in handled if s not in cast)
    per_node = collections.defaultdict(list)
    for s, v in handled.items():
        for e in v:
            per_node["%s/pid%s" % (e.get("node") or e.get("host"), e.get("pid"))].append(s)
    # gap: biggest time between consecutive handlings (by handling time)
    times = sorted((e["time"], s) for s, v in handled.items() for e in v)
    gap = None
    for (t1, s1), (t2, s2) in itertools.pairwise(times):
        if gap is None or t2 - t1 > gap["seconds"]:
            gap = {"seconds": round(t2 - t1, 4), "after_seq": s1, "before_seq": s2}
    latency = sorted(min(e["time"] for e in v) - cast[s]["time"]
                     for s, v in handled.items() if s in cast)
    res = {
        "cast": len(cast),
        "handled": sum(1 for s in handled if s in cast),
        "handled_total": sum(len(v) for v in handled.values()),
        "lost": len(lost), "lost_seqs": lost[:50], "lost_ranges": ranges(lost)[:20],
        "duplicated": len(dup), "duplicated_seqs": dup[:50],
        "unexpected": len(unexpected), "unexpected_seqs": unexpected[:20],
        "nodes": {k: {"count": len(v), "ranges": ranges(v)[:20]}
                  for k, v in sorted(per_node.items())},
        "max_gap": gap,
        "latency_s": ({"min": round(latency[0], 4),
                       "median": round(latency[len(latency) // 2], 4),
                       "max": round(latency[-1], 4)} if latency else None),
        "events": [{k: e.get(k) for k in ("time", "node", "pid", "event")} for e in events],
    }
    print(json.dumps(res, indent=1))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
