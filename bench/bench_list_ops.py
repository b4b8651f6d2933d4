"""Q18 list edits: what insert, delete, pop(0), slices and concatenation cost
on a CowList, against list."""
import random

import _harness as H
import cowstore  # after _harness, which finds a checkout's cowstore

# The edits below are O(n) for both; above this size one sample of the
# slowest would last long enough to dominate the run.
EDIT_MAX = 10**5
SLICE = 100


def operations(n):
    """(name, statement taking the list x, operations per call): each leaves
    x as it found it, so repeats measure the same list."""
    mid, at = n // 2, random.Random(H.SEED).randrange(n - SLICE)
    return [
        ("x[i] (random i)", lambda x, i=at: x[i], 1),
        ("for v in x (per item)", lambda x: [None for _ in x], n),
        ("append + pop()", lambda x: (x.append(1), x.pop()), 1),
        ("insert(0, v) + del x[0]", lambda x: (x.insert(0, 1), x.__delitem__(0)), 1),
        ("pop(0) + insert(0, v)", lambda x: x.insert(0, x.pop(0)), 1),
        ("insert(n/2, v) + del x[n/2]", lambda x: (x.insert(mid, 1), x.__delitem__(mid)), 1),
        (f"x[a:a+{SLICE}]", lambda x: x[at:at + SLICE], 1),
        ("x[1:]", lambda x: x[1:], 1),
        ("x[:]", lambda x: x[:], 1),
        ("x + x", lambda x: x + x, 1),
    ]


def run():
    """List edits: insert, delete, pop(0), slices and concatenation, CowList vs list."""
    res = H.result(
        "list_ops", "18. List edits: insert, pop(0), slices, concatenation",
        "What do `insert`, `del l[i]`, `pop(0)`, slices and `l + l` cost on a CowList of n "
        "ints, against list?",
        "`list(range(n))` shuffled, and the CowList of it (its leaves packed, as any list "
        "built at once). Each statement leaves the list as it found it. Time per "
        f"operation; medians of {H.REPEATS} interleaved repeats; ratio = CowList / list "
        "(time), paired per repeat.")
    sizes = [n for n in H.sizes() if n <= EDIT_MAX]
    names = [name for name, _, _ in operations(sizes[0])]
    rows = []
    for name in names:
        row = [name]
        for n in sizes:
            plain = list(range(n))
            random.Random(H.SEED).shuffle(plain)
            forms = {"list": plain, "CowList": cowstore.CowList(plain)}
            stmt, ops = next((f, k) for label, f, k in operations(n) if label == name)
            s = H.compare([H.Case(form, lambda x=x: stmt(x), ops) for form, x in forms.items()])
            row.append(f"{H.fmt_ns(H.median(s['list']))} / {H.fmt_ns(H.median(s['CowList']))} "
                       f"({H.fmt_ratio(H.paired_ratio(s['CowList'], s['list']))})")
        rows.append(row)
    res["tables"].append({"caption": "list / CowList, median time per operation "
                                     "(CowList / list)",
                          "columns": ["operation"] + [f"n = {H.fmt_n(n)}" for n in sizes],
                          "rows": rows})
    res["notes"] += [
        "Edits away from the end are O(n) for both: list moves pointers with one memmove; "
        "a CowList shares the 32-value leaves before the edit and rebuilds the rest a leaf "
        "at a time (packed items copied as bytes). `x[:]` and slices from a multiple of 32 "
        "share whole leaves.",
        "Reads make an int object per item where list hands out the one it holds.",
        f"Sizes stop at {H.fmt_n(EDIT_MAX)}: the edits are linear in n for both."]
    return res


def main(argv=None):
    return H.script_main(run, argv)


if __name__ == "__main__":
    main()
