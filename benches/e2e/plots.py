"""Plots for BENCHMARKS.md from benches/e2e/results.json: python plots.py RESULTS.json OUTDIR"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"direct": "#8c8c8c", "haproxy": "#457b9d", "nginx": "#2a9d8f", "drawbridge": "#e76f51"}
TARGETS = ["direct", "haproxy", "nginx", "drawbridge"]
# drawbridge is compared with these, one panel each (results from before HAProxy have no haproxy runs).
BASELINES = ["haproxy", "nginx"]


def absolute(res, out):
    rows = [r for r in res["rows"] if any(res["runs"][r["id"]].get(t) for t in TARGETS)]
    cols = 4
    nrows = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, row in zip(axes.flat, rows):
        runs = res["runs"][row["id"]]
        med = res["medians"][row["id"]]
        names = [t for t in TARGETS if runs.get(t)]
        xs = range(len(names))
        ax.bar(xs, [med[t] for t in names], color=[COLORS[t] for t in names], width=0.6)
        for x, t in zip(xs, names):
            ax.scatter([x] * len(runs[t]), runs[t], color="black", s=10, zorder=3)
            ax.annotate(f"{med[t]:,.0f}" if med[t] >= 100 else f"{med[t]:.1f}", (x, med[t]),
                        ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, fontsize=8)
        arrow = "higher is better" if row["better"] == "higher" else "lower is better"
        ax.set_title(f"{row['label']}\n{row['unit']}, {arrow}", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(y=0.15)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.suptitle(f"drawbridge e2e, medians of {res['settings']['reps']} runs (dots: each run), {res['date'][:10]}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "absolute.png"), dpi=110)
    plt.close(fig)


def ratios(res, out):
    """drawbridge ÷ each baseline, one panel per baseline, on the rows where drawbridge and at least
    one baseline were measured (a row a baseline does not apply to has no bar in its panel)."""
    baselines = [b for b in BASELINES if any(res["medians"][r["id"]].get(b) for r in res["rows"])]
    rows = [
        r for r in res["rows"]
        if res["medians"][r["id"]].get("drawbridge") and any(res["medians"][r["id"]].get(b) for b in baselines)
    ]
    labels = [f"{row['label']} ({'↑' if row['better'] == 'higher' else '↓'})" for row in rows]
    fig, axes = plt.subplots(1, len(baselines), figsize=(6 * len(baselines) + 2, 0.45 * len(labels) + 1.2),
                             sharey=True, squeeze=False)
    ys = list(range(len(labels)))[::-1]
    for ax, base in zip(axes.flat, baselines):
        for y, row in zip(ys, rows):
            med = res["medians"][row["id"]]
            if not med.get(base):
                continue
            r = med["drawbridge"] / med[base]
            good = r >= 1 if row["better"] == "higher" else r <= 1
            ax.barh([y], [r], color="#2a9d8f" if good else "#e76f51")
            ax.annotate(f"{r:.2f}", (r, y), va="center", fontsize=8, xytext=(3, 0), textcoords="offset points")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(ys)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(f"drawbridge ÷ {base} (log scale; green: at least as good as {base})", fontsize=8)
        ax.set_title(f"drawbridge relative to {base}, same run", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ratios.png"), dpi=110)
    plt.close(fig)


def main():
    res = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    absolute(res, out)
    ratios(res, out)


if __name__ == "__main__":
    main()
