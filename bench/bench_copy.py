"""Q1 copy cost: copy.deepcopy of a CowDict vs of the plain dict holding the same
nested data, and what a "copy" of an immutable map costs."""
import copy

import _harness as H
import cowstore  # after _harness, which finds a checkout's cowstore

# Competitors' copy.copy/deepcopy are O(n) and slow: measured up to here.
SMALL = 10**3 if H.QUICK else 10**4


def repeat_call(fn, x, reps):
    for _ in reps:
        fn(x)


def share_reference(x, reps):
    for _ in reps:
        y = x  # noqa: F841  (the whole "copy" of an immutable value)


class Trivial:
    """About the least a container's copy.deepcopy can cost: find __deepcopy__,
    call it, get a new object, record it in the memo."""
    __slots__ = ()

    def __deepcopy__(self, memo):
        return Trivial()


def nested(n):
    return {f"k{i}": {"id": i, "name": f"n{i}"} for i in range(n)}


def immutable_versions(plain, makers):
    """The same nested data in each immutable competitor (inner maps too)."""
    out = {}
    for name, make in makers.items():
        out[name] = make({k: make(v) for k, v in plain.items()})
    return out


def run():
    """Copy cost: copy.deepcopy(CowDict) vs copy.deepcopy(dict) and immutable maps."""
    res = H.result(
        "copy", "1. Copy cost",
        "What does `copy.deepcopy` cost for a CowDict of n entries, against the "
        "plain dict of the same nested data and against immutable maps?",
        "Data: `{'k<i>': {'id': i, 'name': 'n<i>'}}` (n outer entries, each a small "
        "dict). CowDict built with `CowDict(plain)`. Cheap operations run in loops of "
        "1,000; every competitor is timed within each repeat, order rotated; medians "
        f"of {H.REPEATS} repeats, GC off during timing (as timeit).")
    makers, missing = H.competitor_maps()
    res["notes"] += missing
    reps = range(1000)
    floor = Trivial()
    rows, comp_rows = [], []
    series = {"copy.deepcopy(dict)": [], "copy.deepcopy(CowDict)": [],
              "CowDict.copy()": [], "deepcopy floor": []}
    at = {}
    for n in H.sizes():
        plain = nested(n)
        cow = cowstore.CowDict(plain)
        cases = [
            H.Case("deepcopy(dict)", lambda: copy.deepcopy(plain)),
            H.Case("deepcopy(CowDict)", lambda: repeat_call(copy.deepcopy, cow, reps), len(reps)),
            H.Case("CowDict.copy()", lambda: repeat_call(type(cow).copy, cow, reps), len(reps)),
            H.Case("floor", lambda: repeat_call(copy.deepcopy, floor, reps), len(reps)),
            H.Case("share", lambda: share_reference(plain, reps), len(reps)),
        ]
        imms = immutable_versions(plain, makers) if n <= SMALL else {}
        for name, imm in imms.items():
            cases.append(H.Case(f"copy.copy({name})", lambda imm=imm: copy.copy(imm)))
            cases.append(H.Case(f"copy.deepcopy({name})", lambda imm=imm: copy.deepcopy(imm)))
        s = H.compare(cases)
        med = {k: H.median(v) for k, v in s.items()}
        ratio = H.paired_ratio(s["deepcopy(dict)"], s["deepcopy(CowDict)"])
        to_floor = H.paired_ratio(s["deepcopy(CowDict)"], s["floor"])
        at[n] = (med["deepcopy(CowDict)"], ratio, to_floor, med["floor"])
        rows.append([H.fmt_n(n), H.fmt_ns(med["deepcopy(dict)"]),
                     H.fmt_ns(med["deepcopy(CowDict)"]), H.fmt_ns(med["CowDict.copy()"]),
                     H.fmt_ns(med["floor"]), H.fmt_ratio(to_floor), H.fmt_ratio(ratio),
                     f"{H.spread(s['deepcopy(CowDict)']):.0f}%"])
        series["copy.deepcopy(dict)"].append((n, med["deepcopy(dict)"]))
        series["copy.deepcopy(CowDict)"].append((n, med["deepcopy(CowDict)"]))
        series["CowDict.copy()"].append((n, med["CowDict.copy()"]))
        series["deepcopy floor"].append((n, med["floor"]))
        for name in imms:
            comp_rows.append([
                H.fmt_n(n), name, H.fmt_ns(med["share"]),
                H.fmt_ns(med[f"copy.copy({name})"]), H.fmt_ns(med[f"copy.deepcopy({name})"]),
                H.fmt_ratio(H.paired_ratio(s[f"copy.deepcopy({name})"], s["deepcopy(CowDict)"]))])
        del plain, cow, imms

    res["tables"].append({
        "caption": "copy.deepcopy: plain dict vs CowDict (medians; ratio = dict / CowDict, paired per repeat)",
        "columns": ["n", "deepcopy(dict)", "deepcopy(CowDict)", "CowDict.copy()",
                    "deepcopy floor¹", "CowDict / floor", "ratio dict/CowDict",
                    "CowDict spread²"],
        "rows": rows})
    if comp_rows:
        cols = ["n", "map", "`y = m` (sharing)", "copy.copy(m)", "copy.deepcopy(m)",
                "ratio deepcopy(m) / deepcopy(CowDict)"]
        res["tables"].append({
            "caption": "Immutable maps: their free \"copy\" is sharing the reference; "
                       "`copy.copy`/`copy.deepcopy` on them rebuild (medians)",
            "columns": cols, "rows": comp_rows})
    res["notes"] += [
        "¹ `copy.deepcopy` of a trivial object whose `__deepcopy__` (Python) returns a new "
        "empty object: the copy module's own overhead (memo dict, method lookup, keep-alive "
        "list), roughly the floor for any container copied through `copy.deepcopy`.",
        "² (max - min) / median of the CowDict deepcopy samples over the repeats."]
    if makers:
        res["notes"].append(
            "immutables.Map, pyrsistent's PMap, rpds.HashTrieMap and pcollections.pdict define "
            "neither `__copy__` nor `__deepcopy__`, so `copy.copy` and `copy.deepcopy` go "
            "through `__reduce__` and rebuild the map: O(n). Their free copy is to keep "
            "sharing the value (`y = m`), shown as measured loop cost. Measured only up to "
            f"n = {H.fmt_n(SMALL)} because the rebuild is slow.")
    top = max(at)
    t_top, r_top, _, floor_top = at[top]
    floors = [f for _, _, f, _ in at.values()]
    where = f"n = {H.fmt_n(top)}"
    at_goal_size = top >= 10**6
    H.goal(res, "CowDict deepcopy constant time",
           f"deepcopy(CowDict) / floor¹ (paired) between {H.fmt_ratio(min(floors))} and "
           f"{H.fmt_ratio(max(floors))} over n = {H.fmt_n(min(at))}..{H.fmt_n(top)}",
           max(floors) / min(floors) < 2 if len(at) > 1 else None)
    H.goal(res, "CowDict deepcopy < 1 µs at 10^6 (an absolute time: see the floor)",
           f"{H.fmt_ns(t_top)} at {where}; the floor¹ alone: {H.fmt_ns(floor_top)}",
           (t_top < 1000) if at_goal_size else None)
    H.goal(res, "deepcopy(dict) / deepcopy(CowDict) > 10^5 at 10^6",
           f"{H.fmt_ratio(r_top)} at {where}", (r_top > 1e5) if at_goal_size else None)
    res["plots"].append({
        "file": "bench_copy.png", "title": "Q1: copy cost (median time per copy)",
        "panels": [{"title": "time per copy vs n", "ylabel": "ns per copy",
                    "series": series}]})
    return res


def main(argv=None):
    return H.script_main(run, argv)


if __name__ == "__main__":
    main()
