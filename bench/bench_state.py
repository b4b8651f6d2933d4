"""Q16 Real program state: records holding datetimes, Decimals, UUIDs and enum
members -- what a program keeps -- copied, held in RAM and stored, plain
objects against cowstore."""
import copy
import datetime
import decimal
import enum
import gc
import os
import pickle
import random
import tempfile
import tracemalloc
import uuid

import _harness as H
import cowstore  # after _harness, which finds a checkout's cowstore

# deepcopy of the plain state is the slow side: sizes stop here.
MAX_STATE = 10**5


class Status(enum.Enum):
    OPEN = "open"
    PAID = "paid"
    VOID = "void"


def state(n, seed=H.SEED):
    """An order book: n orders, each a dict of the leaf types issue 11 names."""
    rng = random.Random(seed)
    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    return {"orders": [{"id": uuid.UUID(int=rng.getrandbits(128)),
                        "at": t0 + datetime.timedelta(seconds=rng.randrange(10**7)),
                        "due": datetime.date(2026, 1, 1) + datetime.timedelta(days=rng.randrange(365)),
                        "amount": decimal.Decimal(rng.randrange(10**6)) / 100,
                        "status": rng.choice(list(Status)),
                        "lines": [{"sku": f"sku-{rng.randrange(1000)}", "qty": rng.randrange(1, 9)}
                                  for _ in range(rng.randrange(1, 4))]}
                       for _ in range(n)],
            "updated": t0}


def traced_bytes(make):
    """(object, tracemalloc bytes it keeps alive)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        obj = make()
        gc.collect()
        return obj, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def stored_bytes(value):
    with tempfile.TemporaryDirectory() as d:
        with cowstore.open(os.path.join(d, "state.cow"), durable=False) as s:
            s["state"] = value
            return s.stats()["file_bytes"]


def run():
    """Real program state: copy, RAM and store size of records with rich leaves."""
    res = H.result(
        "state", "16. Real program state",
        "A program's state of n orders, each holding a UUID, an aware datetime, a date, "
        "a Decimal amount, an enum member and a list of line dicts: what do a copy, the "
        "RAM and a saved file cost, plain Python objects against cowstore?",
        "Copy: `copy.deepcopy(plain)` against `copy.deepcopy(frozen)` (O(1) in cowstore), "
        f"timed side by side, medians of {H.REPEATS}. RAM: tracemalloc's bytes kept alive "
        "by the plain state (as built) and by `cowstore.freeze` of it. Files: "
        "`pickle.dumps(plain, 5)` and a store file holding the frozen state "
        "(`stats()['file_bytes']`).")
    rows, at = [], {}
    for n in [x for x in H.sizes() if x <= MAX_STATE]:
        plain, plain_b = traced_bytes(lambda: state(n))
        frozen, frozen_b = traced_bytes(lambda: cowstore.freeze(plain))
        assert cowstore.thaw(frozen) == plain
        got = H.compare([H.Case("deepcopy", lambda: copy.deepcopy(plain)),
                         H.Case("cowstore", lambda: copy.deepcopy(frozen))])
        ratio = H.paired_ratio(got["deepcopy"], got["cowstore"])
        pkl, file_b = len(pickle.dumps(plain, 5)), stored_bytes(frozen)
        at[n] = (ratio, frozen_b / plain_b, file_b / pkl)
        rows.append([H.fmt_n(n), H.fmt_ns(H.median(got["deepcopy"])),
                     H.fmt_ns(H.median(got["cowstore"])), H.fmt_ratio(ratio),
                     H.fmt_bytes(plain_b), H.fmt_bytes(frozen_b), f"{frozen_b / plain_b:.2f}x",
                     H.fmt_bytes(pkl), H.fmt_bytes(file_b)])
    res["tables"].append({
        "caption": "copy time (medians), RAM (tracemalloc) and file bytes",
        "columns": ["n orders", "deepcopy(plain)", "deepcopy(frozen)", "plain / frozen",
                    "plain RAM", "cowstore RAM", "cowstore / plain", "pickle", "store file"],
        "rows": rows})
    top = max(at)
    ratio, ram, files = at[top]
    H.goal(res, "a copy of the state ≥ 1000x faster than copy.deepcopy",
           f"{H.fmt_ratio(ratio)} at n = {H.fmt_n(top)}", ratio >= 1000)
    H.goal(res, "the state in RAM ≤ 0.5x plain objects",
           f"{ram:.2f}x at n = {H.fmt_n(top)}", ram <= 0.5)
    H.goal(res, "the store file ≤ 1.5x the state's pickle",
           f"{files:.2f}x at n = {H.fmt_n(top)}", files <= 1.5)
    res["notes"].append("Each order is a packed record (pack.h): its datetime, date and "
                        "Decimal are inline extension leaves, the UUID a 17-byte blob by "
                        "word, the enum member a class record; the line dicts pack inside it. "
                        "What keeps the file above the pickle: every UUID and every enum "
                        "member is a blob of its own (17 bytes, and the class path with the "
                        "value), where pickle memoises the enum members and writes a UUID's "
                        "int; interning class records per store would close most of it.")
    return res


def main(argv=None):
    return H.script_main(run, argv)


if __name__ == "__main__":
    main()
