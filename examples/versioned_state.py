# examples/versioned_state.py
"""Many versions of a large nested dict: O(1) copies, stored versions, fast diffs.

An account directory changes a few entries at a time.  Every version is
committed to a store under its own root name, which writes only the nodes on
the changed paths, and the most recent ones are also kept in memory as O(1)
copies.  cowstore.diff lists what changed between two versions by skipping
every subtree they share; a plain recursive comparison of the same versions
as plain dicts has to visit everything.  The script checks the versions and
the diffs against plain-Python bookkeeping and prints the timing ratios.
"""
import argparse
import collections
import copy
import os
import random
import statistics
import tempfile
import time

import cowstore
from cowstore import MISSING


def make_directory(n_users):
    return {"settings": {"signup_open": True, "default_plan": "free"},
            "users": {f"u{i:06d}": {"email": f"user{i}@example.org", "plan": "free",
                                    "quota": {"disk_gb": 5, "seats": 1}, "groups": ["staff"]}
                      for i in range(n_users)}}


def make_edits(n_versions, edits_per_version, n_users, seed=0):
    """For each version, a list of (action, user id); replayable on any copy of the state."""
    rng = random.Random(seed)
    actions = ["plan", "disk", "group", "remove", "add"]
    return [[(rng.choice(actions), f"u{rng.randrange(n_users + n_versions):06d}")
             for _ in range(edits_per_version)] for _ in range(n_versions)]


def apply_edit(state, action, uid):
    users = state["users"]
    if action == "add" and uid not in users:
        users[uid] = {"email": f"{uid}@example.org", "plan": "trial",
                      "quota": {"disk_gb": 1, "seats": 1}, "groups": []}
    elif uid not in users:  # edits of a user that does not exist (yet, or any more) do nothing
        return
    elif action == "plan":
        users[uid]["plan"] = "pro" if users[uid]["plan"] != "pro" else "free"
    elif action == "disk":
        users[uid]["quota"]["disk_gb"] += 10
    elif action == "group":
        users[uid]["groups"].append("admins")
    elif action == "remove":
        del users[uid]


def plain_diff(a, b, path=()):
    """(path, old, new) for each differing leaf, found by visiting every node of a and b."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a.keys() | b.keys():
            yield from plain_diff(a.get(key, MISSING), b.get(key, MISSING), path + (key,))
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            yield from plain_diff(a[i] if i < len(a) else MISSING,
                                  b[i] if i < len(b) else MISSING, path + (i,))
    elif a != b:
        yield path, a, b


def as_dict(changes):
    return {path: (old, new) for path, old, new in changes}


def median_time(fn, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_history(store, edits, n_users, window, checkpoints):
    """Commits every version; returns the last `window` versions as in-memory copies,
    plain deep copies of the checkpoint versions, and the first version's bytes."""
    plain = make_directory(n_users)
    state = cowstore.freeze(plain)
    recent = collections.deque(maxlen=window)  # bounded: each copy pins its store snapshot
    plain_copies = {}
    for v, version_edits in enumerate([[]] + edits):
        for edit in version_edits:
            apply_edit(state, *edit)
            apply_edit(plain, *edit)
        store[f"state@{v:06d}"] = state  # writes only the nodes this version changed
        recent.append(state.copy())  # O(1); taken after the commit, so it shares stored nodes
        if v == 0:
            first_bytes = store.stats()["segment_bytes"]
        if v in checkpoints:
            plain_copies[v] = copy.deepcopy(plain)  # O(size): only for checking
    return recent, plain_copies, first_bytes


def compare_diffs(a, b, plain_a, plain_b, label):
    changes = list(cowstore.diff(a, b))
    assert as_dict(changes) == as_dict(plain_diff(plain_a, plain_b)), label
    t_cow = median_time(lambda: list(cowstore.diff(a, b)))
    t_plain = median_time(lambda: list(plain_diff(plain_a, plain_b)))
    print(f"{label}: {len(changes)} changes; cowstore.diff {t_cow * 1e3:.2f} ms,"
          f" plain recursive comparison {t_plain * 1e3:.1f} ms, ratio {t_plain / t_cow:,.0f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--versions", type=int, default=200)
    parser.add_argument("--edits", type=int, default=5, help="edits per version")
    parser.add_argument("--window", type=int, default=50, help="versions kept in memory")
    args = parser.parse_args()

    edits = make_edits(args.versions, args.edits, args.users)
    last = args.versions
    with tempfile.TemporaryDirectory() as tmp, \
            cowstore.open(os.path.join(tmp, "directory.cow"), durable=False) as store:
        # durable=False: no fsync per commit; a machine crash may lose the last versions
        recent, plain, first_bytes = build_history(store, edits, args.users, args.window,
                                                   {0, last - 1, last})
        names = store.names()
        assert names == [f"state@{v:06d}" for v in range(last + 1)]
        for v in plain:
            assert store[names[v]] == plain[v], f"stored version {v} differs"
        assert recent[-1] == plain[last] and recent[-2] == plain[last - 1]

        per_version = (store.stats()["segment_bytes"] - first_bytes) / last
        print(f"{len(names)} versions of {args.users} users committed, the last {len(recent)}"
              f" also kept in memory; store: {first_bytes / 2**20:.1f} MiB for the first,"
              f" {per_version / 2**10:.1f} KiB per later version")
        compare_diffs(recent[-2], recent[-1], plain[last - 1], plain[last],
                      "consecutive versions")
        compare_diffs(store[names[0]], store[names[last]], plain[0], plain[last],
                      "first and last versions")


if __name__ == "__main__":
    main()
