"""Q2 lookup: d[k] with str keys in random order, int values and str values,
CowDict against dict and the persistent maps; and a field read on the
records of issue 10 (bench/records.py)."""
import random

import _harness as H
import cowstore  # after _harness, which finds a checkout's cowstore
import records as R

PROBES = 2_000 if H.QUICK else 50_000  # random keys looked up per pass


def lookups(d, keys):
    for k in keys:
        d[k]


def empty_loop(d, keys):
    for k in keys:
        pass


# Records whose fields are read, each once per pass in a shuffled order.
RECORDS = 1_000 if H.QUICK else 10_000
# The scalar fields of a record (tags, the list, is a nested read).
SCALAR_FIELDS = ("id", "name", "score", "active", "status")


def field_reads(pairs):
    for r, k in pairs:
        r[k]


def record_field_goal(res, makers):
    """Field read r[k] on a 6-key record held by the caller: a dict (json.loads),
    a record of a frozen list (cowstore's packed record), immutables.Map."""
    plain = R.records(RECORDS)
    rng = random.Random(H.SEED)
    forms = {"dict": plain, "cowstore record": list(cowstore.freeze(plain))}
    if "immutables.Map" in makers:
        forms["immutables.Map"] = [makers["immutables.Map"](r) for r in plain]
    order = [(i, rng.choice(SCALAR_FIELDS)) for i in range(RECORDS)]
    rng.shuffle(order)
    pairs = {name: [(rs[i], k) for i, k in order] for name, rs in forms.items()}
    cases = [H.Case(name, lambda p=p: field_reads(p), RECORDS) for name, p in pairs.items()]
    s = H.compare(cases)
    rows = [[name, H.fmt_ns(H.median(s[name])),
             H.fmt_ratio(H.paired_ratio(s[name], s["dict"]))] for name in forms]
    res["tables"].append({
        "caption": f"field read r[k] on {RECORDS:,} six-key records (bench/records.py), "
                   "a scalar field of each in shuffled order: median time per read",
        "columns": ["record", "time per read", "/ dict"], "rows": rows})
    ratio = H.paired_ratio(s["cowstore record"], s["dict"])
    H.goal(res, "field read on 6-key records: cowstore ≤ 1.5x dict",
           f"{H.fmt_ratio(ratio)}", ratio <= 1.5)


def build(n, values):
    keys = [f"key{i}" for i in range(n)]
    if values == "int":
        return {k: i for i, k in enumerate(keys)}
    return {k: f"value{i}" for i, k in enumerate(keys)}


def run():
    """Lookup: d[k] in random order, CowDict vs dict and persistent maps."""
    res = H.result(
        "lookup", "2. Lookup: d[k]",
        "How fast is `d[k]` (str keys, random order) with int values and with str "
        "values, against dict and the persistent maps?",
        f"Keys `'key<i>'`; values `i` or `'value<i>'`. Each pass looks up "
        f"min(n, {PROBES:,}) distinct keys in a shuffled order (the key objects are the "
        "ones used to build, so dict finds their hash cached). Time per lookup includes "
        "the `for` loop; the loop alone is shown for reference. Medians of "
        f"{H.REPEATS} interleaved repeats; ratio = competitor / dict, paired per repeat.")
    makers, missing = H.competitor_maps()
    res["notes"] += missing
    if "pcollections.pdict" in makers:
        res["notes"].append("pcollections imports; its insertion-ordered map `pdict` "
                            "is the column shown.")
    rng = random.Random(H.SEED)
    names = ["dict", "CowDict"] + list(makers)
    panels, at = [], {}
    for values in ("int", "str"):
        rows, series = [], {name: [] for name in names}
        for n in H.sizes():
            plain = build(n, values)
            probes = rng.sample(list(plain), min(n, PROBES))
            maps = {"dict": plain, "CowDict": cowstore.CowDict(plain)}
            for name, make in makers.items():
                maps[name] = make(plain)
            cases = [H.Case(name, lambda m=m: lookups(m, probes), len(probes))
                     for name, m in maps.items()]
            cases.append(H.Case("loop", lambda: empty_loop(plain, probes), len(probes)))
            s = H.compare(cases)
            row = [H.fmt_n(n), H.fmt_ns(H.median(s["loop"]))]
            for name in names:
                med = H.median(s[name])
                series[name].append((n, med))
                if name == "dict":
                    row.append(H.fmt_ns(med))
                else:
                    r = H.paired_ratio(s[name], s["dict"])
                    row.append(f"{H.fmt_ns(med)} ({H.fmt_ratio(r)})")
            rows.append(row)
            at[values, n] = {
                "dict": H.paired_ratio(s["CowDict"], s["dict"]),
                "immutables": (H.paired_ratio(s["CowDict"], s["immutables.Map"])
                               if "immutables.Map" in s else None)}
            del maps, plain, cases
        res["tables"].append({
            "caption": f"{values} values: median time per lookup (ratio to dict)",
            "columns": ["n", "empty loop"] + names, "rows": rows})
        panels.append({"title": f"{values} values", "ylabel": "ns per lookup",
                       "series": series})
    top = max(H.sizes())
    where = f"n = {H.fmt_n(top)}"
    worst = {v: max(at[v, n]["dict"] for n in H.sizes()) for v in ("int", "str")}
    for values, limit in (("int", 2.0), ("str", 3.0)):
        r = at[values, top]["dict"]
        H.goal(res, f"{values} values: CowDict ≤ {limit:g}x dict",
               f"{H.fmt_ratio(r)} at {where} (worst over sizes {H.fmt_ratio(worst[values])})",
               worst[values] <= limit)
    imm = [at[v, n]["immutables"] for v in ("int", "str") for n in H.sizes()
           if at[v, n]["immutables"] is not None]
    H.goal(res, "CowDict not slower than immutables.Map",
           (f"CowDict / immutables.Map: {H.fmt_ratio(at['int', top]['immutables'])} (int), "
            f"{H.fmt_ratio(at['str', top]['immutables'])} (str) at {where}; worst "
            f"{H.fmt_ratio(max(imm))}") if imm else "immutables not installed",
           (max(imm) <= 1.0) if imm else None)
    res["notes"].append("A goal is met only if it holds at every size measured (the "
                        "worst ratio over sizes is what is judged).")
    res["notes"].append(H.DICT_AT_1E6_NOTE)
    record_field_goal(res, makers)
    res["notes"].append("Records: `cowstore.freeze(records)` packs each record (pack.h); "
                        "the records read are the ones iterating the frozen list gives, "
                        "held by the loop, as dicts from `json.loads` would be.")
    res["plots"].append({"file": "bench_lookup.png",
                         "title": "Q2: lookup d[k], random order (median)",
                         "panels": panels})
    return res


def main(argv=None):
    return H.script_main(run, argv)


if __name__ == "__main__":
    main()
