#!/usr/bin/env python3
"""The peers benchmark's table, CSV, Markdown, ratios and targets (stdlib only).

  summarize.py --raw bench-results/peers-raw.jsonl --out bench-results [--heartbeat V]
               [--keepalived V] [--ours "nova-network-ha V"] [--when "YYYY-MM-DD HH:MM"]

Reads one JSON line per run (scripts/bench/peers: config, kind = unplanned|planned, run,
vip_ms, vm_ms (null when the outage was open at an edge of the probe window), rpc_lost,
rpc_gap_s, steps) and writes peers.csv and peers.md in --out; prints the table, then the
ratios of ours against heartbeat+arping and keepalived, then the issue's targets.
"""
import argparse
import csv
import datetime
import json
import os
import platform
import statistics

ORDER = ["A-4", "A-3", "A-2", "B-4", "B-3", "B-2", "C", "D", "D+", "E", "F"]
DESC = {
    "A-4": "heartbeat, seed's ha.cf, deadtime 4 s (Table 4)",
    "A-3": "heartbeat, seed's ha.cf, deadtime 3 s (Table 4)",
    "A-2": "heartbeat, seed's ha.cf, deadtime 2 s (Table 4)",
    "B-4": "heartbeat + the seed's arping, deadtime 4 s (Table 5)",
    "B-3": "heartbeat + the seed's arping, deadtime 3 s (Table 5)",
    "B-2": "heartbeat + the seed's arping, deadtime 2 s (Table 5)",
    "C": "keepalived VRRPv2, advert_int 1 s",
    "D": "keepalived VRRPv3, advert_int 0.1 s",
    "D+": "D + floating IP as VIP, static NAT",
    "E": "ours, keepalive 250 ms / deadtime 4 s (defaults)",
    "F": "ours, keepalive 100 ms / deadtime 300 ms",
}
FAILURES = ["unplanned", "planned"]


def stats(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"n": len(xs), "min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    distro = "Linux"
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "%d cores (%s), %s, kernel %s" % (os.cpu_count(), cpu, distro, platform.release())


def fmt(v, scale=1.0, digits=0):
    if v is None:
        return "-"
    return "%.*f" % (digits, v / scale)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--heartbeat", default="?")
    ap.add_argument("--keepalived", default="?")
    ap.add_argument("--ours", default="nova-network-ha ?", help="`nova-network-ha --version`")
    ap.add_argument("--when", help="the run's date (default now), YYYY-MM-DD HH:MM")
    a = ap.parse_args()
    rows = [json.loads(line) for line in open(a.raw) if line.strip()]

    table = {}
    for cfg in ORDER:
        for kind in FAILURES:
            rs = [r for r in rows if r["config"] == cfg and r["kind"] == kind]
            if not rs:
                continue
            lost = [r["rpc_lost"] for r in rs
                    if r.get("rpc_lost") is not None and r["rpc_lost"] >= 0]
            table[(cfg, kind)] = {
                "runs": len(rs),
                "vip": stats([r["vip_ms"] for r in rs]),
                "vm": stats([r["vm_ms"] for r in rs]),
                "rpc_lost": sum(lost) if lost else None,
                "rpc_lost_runs": sum(1 for x in lost if x > 0),
                "rpc_gap": stats([r.get("rpc_gap_s") for r in rs]),
            }

    when = a.when or datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    head = ("heartbeat %s, keepalived %s and %s in the lab (scripts/bench/peers), "
            "%s, %s; stand-in nova-network start-up 2 s + 50 ms/command everywhere; "
            "disconnection as the router's prober saw it (one probe every 10 ms)"
            % (a.heartbeat, a.keepalived, a.ours, when, machine()))

    cols = ["configuration", "failure", "runs", "VIP min ms", "VIP median ms", "VIP max ms",
            "VM min ms", "VM median ms", "VM max ms", "RPC lost", "RPC gap median s"]
    md = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    text = [head, ""]
    text.append("%-4s %-52s %-9s %4s %22s %26s %8s %7s" % (
        "cfg", "configuration", "failure", "runs", "VIP min/med/max ms", "VM min/med/max ms",
        "RPC lost", "RPC gap"))
    with open(os.path.join(a.out, "peers.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", "description", "failure", "runs", "vip_n", "vip_min_ms",
                    "vip_median_ms", "vip_max_ms", "vm_n", "vm_min_ms", "vm_median_ms",
                    "vm_max_ms", "rpc_lost", "rpc_gap_median_s"])
        for (cfg, kind), t in table.items():
            vip, vm, gap = t["vip"] or {}, t["vm"] or {}, t["rpc_gap"] or {}
            runs = str(t["runs"])
            if vm.get("n", 0) != t["runs"]:
                runs += " (VM: %d)" % vm.get("n", 0)
            w.writerow([cfg, DESC[cfg], kind, t["runs"], vip.get("n", 0),
                        fmt(vip.get("min")), fmt(vip.get("median")), fmt(vip.get("max")),
                        vm.get("n", 0), fmt(vm.get("min")), fmt(vm.get("median")),
                        fmt(vm.get("max")), "-" if t["rpc_lost"] is None else t["rpc_lost"],
                        fmt(gap.get("median"), 1, 2)])
            md.append("| %s: %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                cfg, DESC[cfg], kind, runs, fmt(vip.get("min")), fmt(vip.get("median")),
                fmt(vip.get("max")), fmt(vm.get("min")), fmt(vm.get("median")),
                fmt(vm.get("max")), "-" if t["rpc_lost"] is None else t["rpc_lost"],
                fmt(gap.get("median"), 1, 2)))
            text.append("%-4s %-52s %-9s %4s %22s %26s %8s %7s" % (
                cfg, DESC[cfg], kind, runs,
                "%s / %s / %s" % (fmt(vip.get("min")), fmt(vip.get("median")), fmt(vip.get("max"))),
                "%s / %s / %s" % (fmt(vm.get("min")), fmt(vm.get("median")), fmt(vm.get("max"))),
                "-" if t["rpc_lost"] is None else t["rpc_lost"], fmt(gap.get("median"), 1, 2)))

    def med(cfg, kind, target):
        t = table.get((cfg, kind))
        return t[target]["median"] if t and t[target] else None

    # Ratios: how many times shorter our median disconnection is (theirs / ours).
    ratio_lines = []

    def ratio(ours, theirs, kind, target):
        o, t = med(ours, kind, target), med(theirs, kind, target)
        if o is None or t is None:
            return None
        if o <= 0 or t <= 0:  # no probe lost: under the prober's 10 ms
            r = None
            verdict = "both under 10 ms" if o <= 0 and t <= 0 else (
                "ours under 10 ms" if o <= 0 else "theirs under 10 ms (ours longer)")
        else:
            r = t / o
            verdict = ("%.1fx shorter" % r) if r >= 1 else ("%.2fx (ours longer)" % r)
        ratio_lines.append("%s %s: ours %s %s ms vs %s %s ms: %s" % (
            kind, target.upper(), ours, fmt(o), theirs, fmt(t), verdict))
        return r

    for kind in FAILURES:
        for target in ("vm", "vip"):
            for ours in ("F", "E"):
                for theirs in ("B-4", "B-3", "B-2"):
                    ratio(ours, theirs, kind, target)
    for kind in FAILURES:
        for target in ("vm", "vip"):
            ratio("E", "C", kind, target)
            ratio("F", "D", kind, target)
            ratio("F", "D+", kind, target)
            ratio("E", "D", kind, target)

    # The targets (VM through its floating IP unless said otherwise).
    targets = []

    def target(name, ok, detail):
        if ok is None:
            targets.append("  n/a     %s (%s)" % (name, detail))
        else:
            targets.append("  %-7s %s (%s)" % ("met" if ok else "MISSED", name, detail))

    a_meds = [med(c, "unplanned", "vm") for c in ("A-4", "A-3", "A-2")]
    a_meds = [x for x in a_meds if x is not None]
    target("A reproduces the seed's tens of seconds (VM, unplanned)",
           (min(a_meds) >= 10000) if a_meds else None,
           "medians " + ", ".join(fmt(x, 1000, 1) + " s" for x in a_meds))
    b_meds = [med(c, "unplanned", "vm") for c in ("B-4", "B-3", "B-2")]
    b_meds = [x for x in b_meds if x is not None]
    target("B reproduces the seed's 4-5 s (VM, unplanned; within 3-6 s)",
           all(3000 <= x <= 6000 for x in b_meds) if b_meds else None,
           "medians " + ", ".join(fmt(x, 1000, 1) + " s" for x in b_meds))
    f_vm, e_vm = med("F", "unplanned", "vm"), med("E", "unplanned", "vm")
    best_b = min(b_meds) if b_meds else None
    target("ours F at least 8x better than B (the best B)",
           (best_b / f_vm >= 8) if (f_vm and best_b) else None,
           "F %s ms, best B %s ms, %sx" % (fmt(f_vm), fmt(best_b),
                                         "%.1f" % (best_b / f_vm) if (f_vm and best_b) else "-"))
    d_vm, dp_vm, c_vm = (med(c, "unplanned", "vm") for c in ("D", "D+", "C"))
    target("ours F better than D", (f_vm < d_vm) if (f_vm and d_vm) else None,
           "F %s ms, D %s ms" % (fmt(f_vm), fmt(d_vm)))
    target("ours F no worse than D+", (f_vm <= dp_vm) if (f_vm and dp_vm) else None,
           "F %s ms, D+ %s ms" % (fmt(f_vm), fmt(dp_vm)))
    target("ours E better than C", (e_vm < c_vm) if (e_vm and c_vm) else None,
           "E %s ms, C %s ms" % (fmt(e_vm), fmt(c_vm)))
    for target_name in ("vm", "vip"):
        fp, dp = med("F", "planned", target_name), med("D", "planned", target_name)
        target("planned: ours F better than keepalived's graceful stop at D (%s)"
               % target_name.upper(),
               (fp < dp) if (fp is not None and dp is not None) else None,
               "F %s ms, D %s ms" % (fmt(fp), fmt(dp)))

    md += ["", "Ratios (median disconnection, theirs / ours):", ""]
    md += ["- " + x for x in ratio_lines]
    md += ["", "Targets (issue 7):", "", "```"] + targets + ["```"]
    with open(os.path.join(a.out, "peers.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(text))
    print("\nwritten: %s, %s" % (os.path.join(a.out, "peers.csv"), os.path.join(a.out, "peers.md")))
    print("\ntargets (issue 7):")
    print("\n".join(targets))
    print("\nratios, ours against heartbeat+arping and keepalived "
          "(median disconnection, theirs / ours):")
    print("\n".join("  " + x for x in ratio_lines))


if __name__ == "__main__":
    main()
