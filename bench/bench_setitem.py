"""Q4 setitem: d[k] = v on an uncopied CowDict against dict, and on a freshly
copied CowDict (path copying) against the persistent maps' set."""
import random

import _harness as H
import cowstore  # after _harness, which finds a checkout's cowstore

PROBES = 2_000 if H.QUICK else 50_000        # keys overwritten per pass, in place
COPY_PROBES = 500 if H.QUICK else 5_000      # copy-then-set operations per pass


def set_in_place(d, keys):
    for k in keys:
        d[k] = -1


def copy_then_set(d, keys):
    for k in keys:
        c = d.copy()
        c[k] = -1


def persistent_set(setter, keys):
    for k in keys:
        setter(k, -1)


SETTERS = {  # the method returning a new version with one key changed
    "immutables.Map": "set", "pyrsistent.pmap": "set",
    "rpds.HashTrieMap": "insert", "pcollections.pdict": "set"}


def run():
    """Setitem: in place vs dict, and copy-then-set vs persistent maps' set."""
    res = H.result(
        "setitem", "4. Setitem: d[k] = v",
        "What does `d[k] = v` cost on a CowDict that shares nothing (in place), against "
        "dict, and right after `copy()` (so the write copies its path), against the "
        "persistent maps' `set`?",
        f"`{{'key<i>': i}}`; every write overwrites an existing key (size stays n), keys "
        f"in shuffled order: min(n, {PROBES:,}) per pass in place, min(n, {COPY_PROBES:,}) "
        "per pass for copy-then-set. Copy-then-set is `c = d.copy(); c[k] = -1` per key, "
        "each version dropped at once; persistent maps do `m.set(k, -1)` (rpds: "
        f"`insert`), also dropped. Medians of {H.REPEATS} interleaved repeats; ratios "
        "paired per repeat.")
    makers, missing = H.competitor_maps()
    res["notes"] += missing
    rng = random.Random(H.SEED)
    rows, crows = [], []
    series = {"dict (in place)": [], "CowDict (in place)": [], "CowDict copy+set": []}
    series.update({f"{name}.{SETTERS[name]}": [] for name in makers})
    inplace, at = {}, {}
    for n in H.sizes():
        plain = {f"key{i}": i for i in range(n)}
        keys = list(plain)
        probes = rng.sample(keys, min(n, PROBES))
        cprobes = rng.sample(keys, min(n, COPY_PROBES))
        d, cow = dict(plain), cowstore.CowDict(plain)
        set_in_place(cow, probes)   # the first pass may rebuild nodes; time steady state
        s = H.compare([H.Case("dict", lambda: set_in_place(d, probes), len(probes)),
                       H.Case("CowDict", lambda: set_in_place(cow, probes), len(probes))])
        r = H.paired_ratio(s["CowDict"], s["dict"])
        rows.append([H.fmt_n(n), H.fmt_ns(H.median(s["dict"])),
                     H.fmt_ns(H.median(s["CowDict"])), H.fmt_ratio(r)])
        series["dict (in place)"].append((n, H.median(s["dict"])))
        series["CowDict (in place)"].append((n, H.median(s["CowDict"])))
        inplace[n] = r

        cases = [H.Case("CowDict copy+set", lambda: copy_then_set(cow, cprobes), len(cprobes))]
        for name, make in makers.items():
            setter = getattr(make(plain), SETTERS[name])
            cases.append(H.Case(name, lambda f=setter: persistent_set(f, cprobes), len(cprobes)))
        s = H.compare(cases)
        row = [H.fmt_n(n), H.fmt_ns(H.median(s["CowDict copy+set"]))]
        series["CowDict copy+set"].append((n, H.median(s["CowDict copy+set"])))
        for name in makers:
            r = H.paired_ratio(s["CowDict copy+set"], s[name])
            row.append(f"{H.fmt_ns(H.median(s[name]))} ({H.fmt_ratio(r)})")
            series[f"{name}.{SETTERS[name]}"].append((n, H.median(s[name])))
            if name == "immutables.Map":
                at[n] = r
        crows.append(row)
        del plain, d, cow, cases
    res["tables"].append({
        "caption": "In place, nothing shared: median time per write",
        "columns": ["n", "dict", "CowDict", "ratio CowDict/dict"], "rows": rows})
    res["tables"].append({
        "caption": "New version per write: median time per write (in parentheses: "
                   "CowDict copy+set / that map's set, < 1 means CowDict is faster)",
        "columns": ["n", "CowDict copy()+set"] + [f"{m}.{SETTERS[m]}" for m in makers],
        "rows": crows})
    top = max(H.sizes())
    H.goal(res, "in place: CowDict ≤ 3x dict",
           f"{H.fmt_ratio(inplace[top])} at n = {H.fmt_n(top)} (worst over sizes "
           f"{H.fmt_ratio(max(inplace.values()))})", max(inplace.values()) <= 3.0)
    H.goal(res, "copy()+set: CowDict not slower than immutables.Map.set",
           (f"{H.fmt_ratio(at[top])} at n = {H.fmt_n(top)} (worst over sizes "
            f"{H.fmt_ratio(max(at.values()))})") if at else "immutables not installed",
           (max(at.values()) <= 1.0) if at else None)
    res["notes"].append("CowDict's copy+set includes `copy()` and dropping the copy; the "
                        "persistent maps' set includes dropping the new version. Both make "
                        "one new version per write.")
    res["notes"].append(H.DICT_AT_1E6_NOTE)
    res["plots"].append({"file": "bench_setitem.png", "title": "Q4: setitem (median)",
                         "panels": [{"title": "time per write", "ylabel": "ns per write",
                                     "series": series}]})
    return res


def main(argv=None):
    return H.script_main(run, argv)


if __name__ == "__main__":
    main()
