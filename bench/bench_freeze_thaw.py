"""Q6 freeze/thaw: cowstore.freeze and cowstore.thaw of a list of small records
against copy.deepcopy of the plain structure."""
import copy

import _harness as H
import cowstore  # after _harness, which finds a checkout's cowstore


def records(n):
    return [{"id": i, "name": f"name{i}", "tags": [f"t{i % 7}", f"u{i % 11}"],
             "score": i * 0.5} for i in range(n)]


def flat(n):
    return {f"key{i}": i for i in range(n)}


def build_table(res):
    """Building one big map from a plain dict: dict(d) (a copy), CowDict(d),
    CowSet(d) (its keys) and immutables.Map(d), per entry."""
    imm, note = H.optional("immutables")
    cases = {"dict(d)": dict, "CowDict(d)": cowstore.CowDict, "CowSet(d)": cowstore.CowSet}
    if imm:
        cases["immutables.Map(d)"] = imm.Map
    else:
        res["notes"].append(note)
    rows = []
    for n in H.sizes():
        d = flat(n)
        assert cowstore.CowDict(d) == d
        s = H.compare([H.Case(name, lambda f=f: f(d), n) for name, f in cases.items()])
        rows.append([H.fmt_n(n)] + [
            H.fmt_ns(H.median(s[name])) + ("" if name == "dict(d)" else
                                           f" ({H.fmt_ratio(H.paired_ratio(s[name], s['dict(d)']))})")
            for name in cases])
        del d
    res["tables"].append({
        "caption": "Building a map from a dict {'key<i>': i}: median time per entry (ratio to "
                   "dict(d), a copy)",
        "columns": ["n"] + list(cases), "rows": rows})
    res["notes"].append(
        "A map is built from a dict or set in bulk: each entry appended to its log, the hash "
        "index built once at the end from the kept hashes (map.h cow_map_builder), where an "
        "insert per entry walked and grew the index each time (490-850 ns an entry at 10^6).")


def run():
    """freeze/thaw vs copy.deepcopy of a list of n small records."""
    res = H.result(
        "freeze_thaw", "6. freeze / thaw",
        "How long do `cowstore.freeze` (plain → cowstore) and `cowstore.thaw` (cowstore → "
        "plain) take on a list of n small records, against `copy.deepcopy` of the plain "
        "list (the usual way to take a private copy)?",
        "Records `{'id': int, 'name': str, 'tags': [str, str], 'score': float}`. Each "
        "repeat runs freeze(plain), copy.deepcopy(plain) and thaw(frozen), order "
        "rotated, each result dropped before the next. The cyclic GC stays enabled (as "
        "in a program): creating millions of plain containers triggers collections, "
        "which deepcopy and thaw pay and freeze mostly does not. Medians of "
        f"{H.REPEATS} repeats; ratios paired per repeat.")
    rows, at = [], {}
    series = {"cowstore.freeze": [], "copy.deepcopy": [], "cowstore.thaw": []}
    for n in H.sizes():
        plain = records(n)
        frozen = cowstore.freeze(plain)
        assert cowstore.thaw(frozen) == plain
        s = H.compare([
            H.Case("freeze", lambda: cowstore.freeze(plain), n, with_gc=True),
            H.Case("deepcopy", lambda: copy.deepcopy(plain), n, with_gc=True),
            H.Case("thaw", lambda: cowstore.thaw(frozen), n, with_gc=True)])
        med = {k: H.median(v) for k, v in s.items()}
        fr = H.paired_ratio(s["freeze"], s["deepcopy"])
        th = H.paired_ratio(s["thaw"], s["deepcopy"])
        at[n] = (fr, th)
        rows.append([H.fmt_n(n), H.fmt_ns(med["deepcopy"] * n), H.fmt_ns(med["freeze"] * n),
                     H.fmt_ns(med["thaw"] * n), H.fmt_ratio(fr), H.fmt_ratio(th),
                     H.fmt_ns(med["freeze"]), H.fmt_ns(med["thaw"])])
        series["cowstore.freeze"].append((n, med["freeze"]))
        series["copy.deepcopy"].append((n, med["deepcopy"]))
        series["cowstore.thaw"].append((n, med["thaw"]))
        del plain, frozen
    res["tables"].append({
        "caption": "Whole-structure times (medians) and ratios to copy.deepcopy",
        "columns": ["n records", "copy.deepcopy", "freeze", "thaw", "freeze/deepcopy",
                    "thaw/deepcopy", "freeze per record", "thaw per record"],
        "rows": rows})
    top = max(at)
    worst_f = max(f for f, _ in at.values())
    worst_t = max(t for _, t in at.values())
    H.goal(res, "freeze faster than copy.deepcopy (ratio < 1)",
           f"{H.fmt_ratio(at[top][0])} at n = {H.fmt_n(top)} (worst over sizes "
           f"{H.fmt_ratio(worst_f)})", worst_f < 1.0)
    H.goal(res, "thaw no slower than copy.deepcopy (ratio ≤ 1)",
           f"{H.fmt_ratio(at[top][1])} at n = {H.fmt_n(top)} (worst over sizes "
           f"{H.fmt_ratio(worst_t)})", worst_t <= 1.0)
    res["plots"].append({"file": "bench_freeze_thaw.png", "title": "Q6: freeze / thaw (median)",
                         "panels": [{"title": "time per record", "xlabel": "n records",
                                     "ylabel": "ns per record", "series": series}]})
    build_table(res)
    return res


def main(argv=None):
    return H.script_main(run, argv)


if __name__ == "__main__":
    main()
