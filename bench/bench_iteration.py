"""Q3 iteration: for k, v in d.items(), CowDict against dict and the
persistent maps."""
import _harness as H
import cowstore  # after _harness, which finds a checkout's cowstore
import records as R

# Maps whose full pass costs microseconds per item: left out above this size to
# keep the run short (dict, CowDict and immutables.Map run at every size).
SLOW = {"pyrsistent.pmap", "rpds.HashTrieMap", "pcollections.pdict"}
SLOW_MAX = 10**5


def iterate_items(d):
    for k, v in d.items():
        pass


# Records whose items are iterated, each a whole pass per sample.
RECORDS = 1_000 if H.QUICK else 10_000


def iterate_records(rs):
    for r in rs:
        for k, v in r.items():
            pass


def record_items_table(res, makers):
    """for k, v in r.items() over each six-key record of a list: the cost a
    loop over JSON-like data pays per record (views, iterator, key objects)."""
    plain = R.records(RECORDS)
    forms = {"dict": plain, "cowstore record": list(cowstore.freeze(plain))}
    if "immutables.Map" in makers:
        forms["immutables.Map"] = [makers["immutables.Map"](r) for r in plain]
    s = H.compare([H.Case(name, lambda rs=rs: iterate_records(rs), RECORDS)
                   for name, rs in forms.items()])
    rows = [[name, H.fmt_ns(H.median(s[name])), H.fmt_ratio(H.paired_ratio(s[name], s["dict"]))]
            for name in forms]
    res["tables"].append({
        "caption": f"for k, v in r.items() over each of {RECORDS:,} six-key records "
                   "(bench/records.py): median time per record",
        "columns": ["record", "time per record", "/ dict"], "rows": rows})
    res["notes"].append("Records: `cowstore.freeze(records)` packs each record; its items are "
                        "read in place (no materialisation), keys shared per shape.")


def run():
    """Iteration: for k, v in d.items(), CowDict vs dict and persistent maps."""
    res = H.result(
        "iteration", "3. Iteration: for k, v in d.items()",
        "How fast is a full `for k, v in d.items()` pass over a CowDict, against dict?",
        "`{'key<i>': i}`; one sample is one or more full passes. Time per item; medians "
        f"of {H.REPEATS} interleaved repeats; ratio = competitor / dict (time), paired "
        "per repeat. \"Half as fast as dict\" means a ratio ≤ 2.")
    makers, missing = H.competitor_maps()
    res["notes"] += missing
    names = ["dict", "CowDict"] + list(makers)
    rows, series, ratios = [], {name: [] for name in names}, {}
    for n in H.sizes():
        plain = {f"key{i}": i for i in range(n)}
        maps = {"dict": plain, "CowDict": cowstore.CowDict(plain)}
        for name, make in makers.items():
            if name not in SLOW or n <= SLOW_MAX:
                maps[name] = make(plain)
        s = H.compare([H.Case(name, lambda m=m: iterate_items(m), n)
                       for name, m in maps.items()])
        row = [H.fmt_n(n)]
        for name in names:
            if name not in s:
                row.append("—")
                continue
            med = H.median(s[name])
            series[name].append((n, med))
            if name == "dict":
                row.append(H.fmt_ns(med))
            else:
                row.append(f"{H.fmt_ns(med)} ({H.fmt_ratio(H.paired_ratio(s[name], s['dict']))})")
        ratios[n] = H.paired_ratio(s["CowDict"], s["dict"])
        rows.append(row)
        del maps, plain
    if any(name in SLOW for name in makers) and max(H.sizes()) > SLOW_MAX:
        res["notes"].append(f"—: not run above n = {H.fmt_n(SLOW_MAX)} (microseconds per "
                            "item; it would dominate the run time).")
    res["tables"].append({"caption": "Median time per item (ratio to dict)",
                          "columns": ["n"] + names, "rows": rows})
    top = max(ratios)
    worst = max(ratios.values())
    H.goal(res, "CowDict items() iteration at least half as fast as dict (ratio ≤ 2)",
           f"{H.fmt_ratio(ratios[top])} at n = {H.fmt_n(top)} (worst over sizes "
           f"{H.fmt_ratio(worst)})", worst <= 2.0)
    record_items_table(res, makers)
    res["plots"].append({"file": "bench_iteration.png",
                         "title": "Q3: for k, v in d.items() (median)",
                         "panels": [{"title": "time per item", "ylabel": "ns per item",
                                     "series": series}]})
    return res


def main(argv=None):
    return H.script_main(run, argv)


if __name__ == "__main__":
    main()
