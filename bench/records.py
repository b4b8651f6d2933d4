"""The JSON-like records of issue 10's size question, from a fixed seed.

Each record has six fields, one of each kind a JSON document holds:

    {"id": 1043, "name": "kqzvle", "score": 0.7329, "active": True,
     "tags": ["blue", "omega"], "status": "pending"}

id (int), name (a short random str, unique-ish), score (float), active (bool),
tags (a list of 0-3 short strs from a vocabulary), status (one str of a small
set).  The same n and seed give the same records on every machine; bench
scripts and the size regression test (tests/python/test_record_size.py)
import this module so they measure the same data.
"""
import json
import random

SEED = 20261204
# Tags are drawn from this vocabulary, statuses from STATUSES: repeated strings,
# as real documents repeat enum-like values.
TAGS = ("red", "green", "blue", "alpha", "beta", "gamma", "delta", "omega")
STATUSES = ("active", "pending", "closed", "archived")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def records(n, seed=SEED):
    """n records (a list of plain dicts), the same for a given n and seed."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append({
            "id": rng.randrange(10**6),
            "name": "".join(rng.choice(_LETTERS) for _ in range(rng.randint(4, 10))),
            "score": round(rng.random() * 1000, 2),
            "active": rng.random() < 0.5,
            "tags": rng.sample(TAGS, rng.randint(0, 3)),
            "status": rng.choice(STATUSES),
        })
    return out


def compact_json(obj):
    """obj as compact JSON text (no spaces after separators), UTF-8 bytes."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
