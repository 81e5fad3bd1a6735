#!/usr/bin/env python3
"""The peers benchmark's bar chart: median disconnection per configuration, min-max as error
bars, log scale, one panel per failure (unplanned, planned), VIP and VM side by side.

  plot.py bench-results/peers.csv bench-results/peers.png

Needs matplotlib (scripts/bench/peers puts it in .venv-bench); reads the CSV summarize.py wrote
and the note under its Markdown table's title line (machine and date) from peers.md beside it.
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

ORDER = ["A-4", "A-3", "A-2", "B-4", "B-3", "B-2", "C", "D", "D+", "E", "F"]
FLOOR_MS = 10.0  # the prober's interval: a shorter outage loses no probe
COLOR = {"A": "#b0b0b0", "B": "#7f7f7f", "C": "#9ecae1", "D": "#4292c6", "D+": "#08519c",
         "E": "#fdae6b", "F": "#e6550d"}


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def main():
    src, dst = sys.argv[1], sys.argv[2]
    rows = list(csv.DictReader(open(src)))
    note = ""
    md = os.path.join(os.path.dirname(src), "peers.md")
    if os.path.exists(md):
        first = open(md).readline()
        # "... (scripts/bench/peers), DATE, MACHINE; ..." -> "DATE, MACHINE"
        if "(scripts/bench/peers), " in first:
            note = first.split("(scripts/bench/peers), ", 1)[1].split(";", 1)[0]
    fails = [f for f in ("unplanned", "planned") if any(r["failure"] == f for r in rows)]
    fig, axes = plt.subplots(1, len(fails), figsize=(6.5 * len(fails), 4.8), squeeze=False)
    for ax, fail in zip(axes[0], fails, strict=True):
        cfgs = [c for c in ORDER if any(r["config"] == c and r["failure"] == fail for r in rows)]
        for j, target in enumerate(("vip", "vm")):
            xs, meds, lo, hi, colors = [], [], [], [], []
            for i, c in enumerate(cfgs):
                r = next(r for r in rows if r["config"] == c and r["failure"] == fail)
                m = num(r[target + "_median_ms"])
                if m is None:
                    continue
                m = max(m, FLOOR_MS)  # log scale: no lost probe (< 10 ms) drawn at 10 ms
                xs.append(i + (j - 0.5) * 0.38)
                meds.append(m / 1000)
                lo.append((m - max(num(r[target + "_min_ms"]) or 0, FLOOR_MS)) / 1000)
                hi.append(((num(r[target + "_max_ms"]) or m) - m) / 1000)
                colors.append(COLOR["D+" if c == "D+" else c[0]])
            ax.bar(xs, meds, width=0.36, color=colors, yerr=[lo, hi], capsize=2,
                   hatch="" if target == "vm" else "//", edgecolor="black", linewidth=0.5,
                   label="VM via floating IP" if target == "vm" else "VIP")
        ax.set_xticks(range(len(cfgs)))
        ax.set_xticklabels(cfgs)
        ax.set_yscale("log")
        ax.set_ylim(FLOOR_MS / 1000 * 0.8, 100)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: "%g" % v))
        ax.set_ylabel("disconnection, s (median; bars min-max; 0.01 = none seen)")
        how = "power-off" if fail == "unplanned" else "HA daemon stopped"
        ax.set_title("%s (%s)" % (fail, how))
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle("heartbeat (A, B+arping), keepalived (C, D, D+) and ours (E, F), "
                 "same lab and run\n" + note, fontsize=9)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main()
