#!/usr/bin/env python3
"""Plots of the benchmark suite (bench/suite.py): throughput.png, latency_cdf.png, p4_push.png.

    bench/peers/.venv/bin/python bench/plot.py [--out DIR] [--suite DIR/suite.json] [--cdf-concurrency 4]

throughput.png: P2, correct answers per second against closed-loop concurrency, one line per
server (the median over the suite's rounds). latency_cdf.png: P2's latency CDF at one
concurrency (default 4) per server, from the load generator's `cdf` points (the latency at
every percentile, then 99.5 ... 100 %) of the round nearest the median, on a log latency
axis. p4_push.png: P4, each request's latency against its send time, with the push →
first response interval shaded. DIR defaults to bench/peers/.logs/suite, as for suite.py.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ORDER = ("conduit", "pytriton", "ray")
LABEL = {"conduit": "Conduit", "pytriton": "PyTriton", "ray": "Ray Serve"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "peers", ".logs", "suite"))
    ap.add_argument("--suite", help="default: OUT/suite.json")
    ap.add_argument("--cdf-concurrency", type=int, default=4)
    args = ap.parse_args()
    path = args.suite or os.path.join(args.out, "suite.json")
    with open(path) as f:
        doc = json.load(f)
    points = [p for p in doc.get("p2") or [] if p.get("throughput_rps")]
    servers = [s for s in ORDER if any(p["server"] == s for p in points)]
    servers += sorted({p["server"] for p in points} - set(servers))
    if not servers:
        print(f"{path}: no P2 point with results", file=sys.stderr)
        return 1
    paddings = [p for p in doc.get("padding", ["max_length"]) if any(x.get("padding", "max_length") == p
                                                                    for x in points)]
    title = (f"paraphrase, KServe v2 gRPC, closed loop, {doc['warmup_s']:g} s warm-up + "
             f"{doc['duration_s']:g} s, median of {doc['rounds']} round(s), {doc.get('cpus', '?')} CPUs")
    heading = {"max_length": "padded to 128 tokens", "longest": "padded to the longer sentence"}
    os.makedirs(args.out, exist_ok=True)

    def panels():
        fig, axes = plt.subplots(1, len(paddings), figsize=(6 * len(paddings), 4.5), squeeze=False)
        return fig, list(zip(paddings, axes[0]))

    fig, axes = panels()
    for padding, ax in axes:
        mine = [p for p in points if p.get("padding", "max_length") == padding]
        for s in servers:
            pts = sorted((p["concurrency"], p["throughput_rps"]) for p in mine if p["server"] == s)
            ax.plot([c for c, _ in pts], [t for _, t in pts], marker="o", label=LABEL.get(s, s))
        levels = sorted({p["concurrency"] for p in mine})
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels)
        ax.set_xticklabels([str(c) for c in levels])
        ax.set_xlabel("concurrency (clients)")
        ax.set_ylabel("correct answers / s")
        ax.set_ylim(bottom=0)
        ax.set_title(heading.get(padding, padding), fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tp = os.path.join(args.out, "throughput.png")
    fig.savefig(tp, dpi=120)
    plt.close(fig)

    fig, axes = panels()
    drawn = 0
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for padding, ax in axes:
        for s in servers:
            point = next((p for p in points if p["server"] == s and p["concurrency"] == args.cdf_concurrency
                          and p.get("padding", "max_length") == padding), None)
            if point is None or not point.get("cdf"):
                continue
            pts = [(p["latency_us"] / 1000, p["q"] * 100) for p in point["cdf"] if p["latency_us"] is not None]
            ax.plot([x for x, _ in pts], [y for _, y in pts], label=LABEL.get(s, s))
            drawn += 1
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("percentile (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{heading.get(padding, padding)}, concurrency {args.cdf_concurrency}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"latency CDF; {title}", fontsize=9)
    fig.tight_layout()
    cdf = os.path.join(args.out, "latency_cdf.png")
    fig.savefig(cdf, dpi=120)
    plt.close(fig)
    wrote = [tp, cdf]
    p4 = doc.get("p4") or {}
    timeline = ((p4.get("run") or {}).get("load") or {}).get("timeline")
    if timeline and "push_from_ms" in p4:
        fig, ax = plt.subplots(figsize=(7, 4))
        ok = [(t / 1000, lat) for t, lat, good in timeline if good]
        ax.scatter([t for t, _ in ok], [lat for _, lat in ok], s=6, label="paraphrase requests")
        ax.axvspan(p4["push_from_ms"] / 1000, p4["push_to_ms"] / 1000, color="tab:orange", alpha=0.3,
                   label=f"push → first response ({p4['push_to_first_response_s'] * 1e3:.0f} ms)")
        ax.set_xlabel("send time (s into the window)")
        ax.set_ylabel("latency (ms)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"P4: a new embedding-post version pushed while serving {p4['rate_rps']:.1f} req/s "
                     "(half of saturation, Poisson)", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        push = os.path.join(args.out, "p4_push.png")
        fig.savefig(push, dpi=120)
        plt.close(fig)
        wrote.append(push)
    print(f"wrote {', '.join(wrote)}" + ("" if drawn else f" (no run at concurrency {args.cdf_concurrency})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
