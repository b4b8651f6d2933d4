"""Q7 GC pauses: gc.collect() time while n records are alive as plain objects
vs frozen into cowstore."""
import gc
import time

import _harness as H
import cowstore  # after _harness, which finds a checkout's cowstore
from bench_freeze_thaw import records


def timed_collect():
    gc.collect()    # untimed: clears what the last conversion left
    t0 = time.perf_counter_ns()
    gc.collect()
    return time.perf_counter_ns() - t0


def cycle(n, repeats):
    """Times gc.collect() with nothing alive, then with n records alive as plain
    objects, then with the same records frozen, once per repeat, so the three
    states are sampled side by side all through the run."""
    got = {"none": [], "plain": [], "frozen": []}
    for _ in range(repeats):
        got["none"].append(timed_collect())
        data = records(n)
        got["plain"].append(timed_collect())
        data = cowstore.freeze(data)
        got["frozen"].append(timed_collect())
        del data
    return got


def run():
    """GC pauses: gc.collect() with n records alive, plain vs frozen."""
    res = H.result(
        "gc", "7. GC pauses",
        "How long does a full `gc.collect()` take while n records (as in section 6) are "
        "alive as plain dicts/lists, against the same records frozen into cowstore?",
        "One process. Each repeat times a full `gc.collect()` (after an untimed one) "
        "three times: with no records alive (the interpreter's own objects: modules, "
        "functions, the harness; no container can remove that cost), with the records "
        "alive as plain dicts/lists, and with them frozen by `cowstore.freeze` (the plain "
        f"ones dropped). Medians of {H.REPEATS} repeats; differences and ratios are "
        "paired per repeat.")
    tracked = len(gc.get_objects())
    rows, at = [], {}
    series = {"plain": [], "frozen": [], "nothing alive": []}
    for n in H.sizes():
        got = cycle(n, H.REPEATS)
        none, p, f = (H.median(got[k]) for k in ("none", "plain", "frozen"))
        extra = H.median(y - x for x, y in zip(got["none"], got["frozen"]))
        at[n] = (none, p, f, extra)
        rows.append([H.fmt_n(n), H.fmt_ns(none), H.fmt_ns(p), H.fmt_ns(f),
                     ("−" if extra < 0 else "") + H.fmt_ns(abs(extra)),
                     H.fmt_ratio(H.paired_ratio(got["plain"], got["frozen"]))])
        for name, v in (("nothing alive", none), ("plain", p), ("frozen", f)):
            series[name].append((n, v / 1e6))
    res["tables"].append({
        "caption": f"gc.collect() time (medians; {tracked:,} objects tracked by the GC "
                   "before any records exist)",
        "columns": ["n records", "nothing alive", "plain alive", "frozen alive",
                    "frozen − nothing (paired)", "plain / frozen"],
        "rows": rows})
    top = max(at)
    none, p, f, extra = at[top]
    H.goal(res, "gc.collect() < 1 ms with 10^6 records frozen",
           f"{H.fmt_ns(f)} at n = {H.fmt_n(top)} (nothing alive: {H.fmt_ns(none)}; "
           f"plain: {H.fmt_ns(p)})", (f < 1e6) if top >= 10**6 else None)
    H.goal(res, "(reading of the goal that discounts the interpreter) frozen − nothing "
                "< 1 ms at 10^6",
           f"{'−' if extra < 0 else ''}{H.fmt_ns(abs(extra))} at n = {H.fmt_n(top)} "
           "(median of paired differences)", (extra < 1e6) if top >= 10**6 else None)
    res["notes"].append("The literal goal includes the interpreter's own cost, which on a "
                        "slow or busy machine can exceed 1 ms by itself; the second row "
                        "judges only what the frozen records add. On a noisy machine that "
                        "difference is mostly noise around zero.")
    res["notes"].append("A frozen structure is one Python object (its nodes hold no "
                        "Python objects), so the GC has nothing of it to traverse; what "
                        "remains is the interpreter's baseline.")
    res["plots"].append({"file": "bench_gc.png", "title": "Q7: gc.collect() pause (median)",
                         "panels": [{"title": "full collection", "xlabel": "n records",
                                     "ylabel": "ms per gc.collect()", "series": series}]})
    return res


def main(argv=None):
    return H.script_main(run, argv)


if __name__ == "__main__":
    main()
