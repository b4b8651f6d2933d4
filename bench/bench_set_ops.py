"""Q19 set algebra: what |, &, -, ^, the subset tests and discard cost on a
CowSet, against set."""
import _harness as H
import cowstore  # after _harness, which finds a checkout's cowstore

# The operations below are O(n) for both; above this size one sample of the
# slowest would last long enough to dominate the run.
SET_MAX = 10**5


def operations():
    """(name, statement taking sets a and b, operations per call): none
    changes a or b, so repeats measure the same sets."""
    return [
        ("a \\| b", lambda a, b: a | b, 1),        # a pipe escaped for the table
        ("a & b", lambda a, b: a & b, 1),
        ("a - b", lambda a, b: a - b, 1),
        ("a ^ b", lambda a, b: a ^ b, 1),
        ("a <= b", lambda a, b: a <= b, 1),
        ("a.isdisjoint(b)", lambda a, b: a.isdisjoint(b), 1),
        ("a.discard(x) + a.add(x)", lambda a, b: (a.discard(0), a.add(0)), 1),
    ]


def run():
    """Set algebra: |, &, -, ^, <=, isdisjoint and discard on CowSet vs set."""
    res = H.result(
        "set_ops", "19. Set algebra: |, &, -, ^, subset tests, discard",
        "What do the set operators cost between two CowSets of n ints, against set?",
        "a = the ints [0, n), b = [n/2, 3n/2) (half shared); the CowSets of them (built "
        f"at once). Time per operation; medians of {H.REPEATS} interleaved repeats; ratio "
        "= CowSet / set (time), paired per repeat.")
    sizes = [n for n in H.sizes() if n <= SET_MAX]
    rows = []
    for name, stmt, ops in operations():
        row = [name]
        for n in sizes:
            a, b = set(range(n)), set(range(n // 2, n + n // 2))
            forms = {"set": (a, b), "CowSet": (cowstore.CowSet(a), cowstore.CowSet(b))}
            s = H.compare([H.Case(form, lambda x=x: stmt(*x), ops) for form, x in forms.items()])
            row.append(f"{H.fmt_ns(H.median(s['set']))} / {H.fmt_ns(H.median(s['CowSet']))} "
                       f"({H.fmt_ratio(H.paired_ratio(s['CowSet'], s['set']))})")
        rows.append(row)
    res["tables"].append({"caption": "set / CowSet, median time per operation (CowSet / set)",
                          "columns": ["operation"] + [f"n = {H.fmt_n(n)}" for n in sizes],
                          "rows": rows})
    res["notes"] += [
        "Between two CowSets the loops run in the core on the maps' keys "
        "(csrc/core/set_algebra.c): a step hashes the key's bytes and looks it up in the "
        "other map; no element object is made.  set compares cached hashes and pointers.",
        "An operation that drops a good part of the left set (&, -, ^ with an operand "
        "not much smaller) builds the result's map afresh from the kept keys; a small "
        "change is made on a copy, sharing the rest.",
        "`a <= b` is O(1) here for both: a holds elements b lacks and they are found first.",
        f"Sizes stop at {H.fmt_n(SET_MAX)}: the operations are linear in n for both."]
    return res


def main(argv=None):
    return H.script_main(run, argv)


if __name__ == "__main__":
    main()
