"""Shared machinery for the bench/ scripts: sizes, timing, results, rendering.

Every script answers one question and returns a *result*: a JSON-able dict

    {"key": "lookup", "title": "...", "question": "...",
     "tables": [{"caption": ..., "columns": [...], "rows": [[...], ...]}],
     "goals": [{"goal": ..., "measured": ..., "met": True | False | None}],
     "plots": [{"file": "bench_lookup.png", "title": ..., "panels": [...]}],
     "notes": ["..."]}

which ``render_section`` turns into markdown and ``draw_plots`` into PNGs.

Timing method (the machine is noisy, so no single absolute time is a claim):
each competitor is a ``Case`` whose function performs ``ops`` operations in a
timeit-style loop.  ``compare`` calibrates every case once, then runs all cases
once per repeat, rotating their order each repeat so that drift in machine speed
hits every competitor alike.  Reported figures are medians over repeats; ratios
are the median of the per-repeat ratios (each pair measured seconds apart).

Environment:
  COWSTORE_BENCH_MAX=N    largest size (default 10**6)
  COWSTORE_BENCH_QUICK=1  sizes up to 10**4, 3 repeats, short samples (smoke test)
"""
import argparse
import gc
import json
import math
import os
import statistics
import sys
import time

try:
    import cowstore  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import cowstore  # noqa: F401

QUICK = os.environ.get("COWSTORE_BENCH_QUICK", "") not in ("", "0")
MAX_SIZE = int(os.environ.get("COWSTORE_BENCH_MAX", str(10**6)))
if QUICK:
    MAX_SIZE = min(MAX_SIZE, 10**4)
REPEATS = 3 if QUICK else 5
# The sections judged by a ratio to dict at 10^6 (lookup, setitem) say so.
DICT_AT_1E6_NOTE = (
    "dict's own time at n = 10^6 moves by up to 2.5x from one run of the suite to the "
    "next (same build, same machine; seen: in-place set 79 to 264 ns, d[k] 142 to 274 "
    "ns), with where its tables land in memory; CowDict's moves less, so the 10^6 ratio "
    "moves with dict's. Within one run the ratios are paired and steady.")
# A sample (one run of one case) lasts at least this long, so that timer
# resolution and scheduler hiccups stay small against it.
MIN_SAMPLE_NS = 2_000_000 if QUICK else 40_000_000
SEED = 20261128


def sizes(lo=3):
    """Powers of ten from 10**lo up to MAX_SIZE (and MAX_SIZE itself)."""
    out = [10**e for e in range(lo, 10) if 10**e <= MAX_SIZE]
    if not out or out[-1] != MAX_SIZE:
        out.append(MAX_SIZE)
    return out


def fmt_n(n):
    e = round(math.log10(n)) if n > 0 else 0
    return f"10^{e}" if 10**e == n else f"{n:,}"


# ---------------------------------------------------------------- competitors

def optional(module):
    """Imports an optional competitor; returns (module or None, note)."""
    try:
        return __import__(module), ""
    except ImportError as exc:
        return None, f"`{module}` not importable here ({exc}); its column is missing."


def competitor_maps():
    """Name -> (constructor from a plain dict, note) for each importable persistent
    map, plus a list of notes on the missing ones.  The constructor takes a
    dict and returns the competitor holding the same items."""
    makers, notes = {}, []
    mod, note = optional("immutables")
    if mod:
        makers["immutables.Map"] = mod.Map
    else:
        notes.append(note)
    mod, note = optional("pyrsistent")
    if mod:
        makers["pyrsistent.pmap"] = lambda d, _m=mod: _m.pmap(d)
    else:
        notes.append(note)
    mod, note = optional("rpds")
    if mod:
        makers["rpds.HashTrieMap"] = mod.HashTrieMap
    else:
        notes.append(note)
    mod, note = optional("pcollections")
    if mod:
        if hasattr(mod, "pdict"):
            makers["pcollections.pdict"] = mod.pdict
        else:
            notes.append("`pcollections` has no `pdict` (its insertion-ordered map).")
    else:
        notes.append(note)
    return makers, notes


# --------------------------------------------------------------------- timing

class Case:
    """One competitor: ``fn()`` performs ``ops`` operations."""

    def __init__(self, name, fn, ops=1, with_gc=False):
        self.name, self.fn, self.ops, self.with_gc = name, fn, ops, with_gc
        self.number = 1

    def run(self):
        """Total ns of ``number`` calls of fn (GC off as timeit does, unless with_gc)."""
        fn, number = self.fn, self.number
        enabled = gc.isenabled()
        if not self.with_gc:
            gc.disable()
        try:
            t0 = time.perf_counter_ns()
            for _ in range(number):
                fn()
            return time.perf_counter_ns() - t0
        finally:
            if enabled:
                gc.enable()

    def calibrate(self, min_ns=None):
        """Picks number so a sample lasts at least min_ns (timeit's autorange)."""
        min_ns = MIN_SAMPLE_NS if min_ns is None else min_ns
        self.number = 1
        while True:
            took = self.run()
            if took >= min_ns or self.number >= 1 << 30:
                return
            grow = min_ns / max(took, 1)
            self.number = max(self.number * 2, int(self.number * grow * 1.1))


def compare(cases, repeats=None, calibrate=True):
    """Runs cases interleaved; returns {name: [ns per op, one per repeat]}."""
    repeats = REPEATS if repeats is None else repeats
    if calibrate:
        for case in cases:
            case.calibrate()
    samples = {case.name: [] for case in cases}
    for r in range(repeats):
        k = r % len(cases)
        for case in cases[k:] + cases[:k]:
            samples[case.name].append(case.run() / (case.number * case.ops))
    return samples


def median(xs):
    return statistics.median(xs)


def paired_ratio(a, b):
    """Median over repeats of a[r] / b[r] (a and b measured side by side)."""
    return statistics.median(x / y for x, y in zip(a, b) if y > 0)


def spread(xs):
    """(max - min) / median, as a percentage: how noisy the repeats were."""
    m = median(xs)
    return 100.0 * (max(xs) - min(xs)) / m if m else 0.0


def fmt_ns(ns):
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def fmt_ratio(x):
    if x >= 1e4:
        return f"{x:.2e}"
    if x >= 100:
        return f"{x:.0f}x"
    return f"{x:.2f}x"


def fmt_bytes(b):
    sign = "-" if b < 0 else ""
    b = abs(b)
    if b >= 1 << 20:
        return f"{sign}{b / (1 << 20):.1f} MiB"
    if b >= 1 << 10:
        return f"{sign}{b / (1 << 10):.1f} KiB"
    return f"{sign}{b:.0f} B"


# -------------------------------------------------------------------- results

def result(key, title, question, method):
    return {"key": key, "title": title, "question": question, "method": method,
            "tables": [], "goals": [], "plots": [], "notes": [],
            "sizes": sizes(), "repeats": REPEATS, "quick": QUICK}


def goal(res, text, measured, met):
    res["goals"].append({"goal": text, "measured": measured, "met": met})


def met_word(met):
    return {True: "**met**", False: "**not met**", None: "n/a"}[met]


def _md_table(columns, rows):
    out = ["| " + " | ".join(columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def render_section(res, plots_written=()):
    parts = [f"## {res['title']}", "", f"*Question.* {res['question']}", "",
             f"*Method.* {res['method']}", ""]
    if res["goals"]:
        parts += ["**Goals**", "",
                  _md_table(["goal", "measured", "verdict"],
                            [[g["goal"], g["measured"], met_word(g["met"])]
                             for g in res["goals"]]), ""]
    for table in res["tables"]:
        parts += [f"**{table['caption']}**", "", _md_table(table["columns"], table["rows"]), ""]
    for plot in res["plots"]:
        if plot["file"] in plots_written:
            parts += [f"![{plot['title']}]({plot['file']})", ""]
    for note in res["notes"]:
        parts += [f"- {note}"]
    if res["notes"]:
        parts.append("")
    return "\n".join(parts)


def _draw_bars(ax, panel):
    """A bar panel: {"kind": "bar", "title", "ylabel", "bars": {label: value}},
    each bar marked with its value (``fmt``: a format string, default "{:.0f}");
    optional ``logy`` and ``highlight`` ({label: colour})."""
    labels, values = zip(*panel["bars"].items())
    colors = [panel.get("highlight", {}).get(label, "tab:blue") for label in labels]
    bars = ax.bar(range(len(values)), values, color=colors)
    fmt = panel.get("fmt", "{:.0f}")
    for bar, value in zip(bars, values):
        ax.annotate(fmt.format(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    if panel.get("logy"):
        ax.set_yscale("log")
    ax.set_title(panel["title"], fontsize=10)
    ax.set_ylabel(panel["ylabel"])
    ax.grid(True, axis="y", alpha=0.3)


def draw_plots(res, outdir):
    """Writes res's plots as PNGs into outdir; returns the files written
    (none when matplotlib is missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for plot in res["plots"]:
        panels = plot["panels"]
        fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0),
                                 squeeze=False)
        for ax, panel in zip(axes[0], panels):
            if panel.get("kind") == "bar":
                _draw_bars(ax, panel)
                continue
            logy = panel.get("logy", True)
            for name, points in panel["series"].items():
                # A log axis cannot show a zero (an RSS delta can read 0): leave it out.
                points = [(x, y) for x, y in points if y > 0 or not logy]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, marker="o", label=name)
            ax.set_xscale("log" if panel.get("logx", True) else "linear")
            ax.set_yscale("log" if logy else "linear")
            ax.set_title(panel["title"], fontsize=10)
            ax.set_xlabel(panel.get("xlabel", "n (entries)"))
            ax.set_ylabel(panel["ylabel"])
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(plot["title"], fontsize=11)
        # Fixed margins: tight_layout would double the time of each figure.
        # Bar labels are names, set at a slant: they need a deeper bottom margin.
        bottom = 0.34 if any(p.get("kind") == "bar" for p in panels) else 0.13
        fig.subplots_adjust(left=0.16 / len(panels), right=0.98, bottom=bottom, top=0.84,
                            wspace=0.3)
        fig.savefig(os.path.join(outdir, plot["file"]), dpi=90)
        plt.close(fig)
        written.append(plot["file"])
    return written


def script_main(run, argv=None):
    """The main() of every bench script: run, print the markdown section, and
    with --json PATH also write the result for run_all.py."""
    parser = argparse.ArgumentParser(description=(run.__doc__ or "").strip())
    parser.add_argument("--json", help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    res = run()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh)
    else:
        print(render_section(res))
    return res
