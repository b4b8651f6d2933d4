"""Packed containers (csrc/include/cowstore/pack.h) as users meet them.

Small dicts with str keys, lists and tuples read in by freeze or a
constructor are packed: one compact node per record, keys stored once per
shape.  Nothing about them may show, except in memory: every read, view,
write, copy, comparison, hash, pickle, diff and store round trip behaves as
with the general containers.  (The hypothesis RecordsMachine in
test_differential.py checks random operation sequences; these are the
scenarios worth naming.)
"""
import copy
import gc
import pickle
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

import cowstore
from cowstore import CowDict, CowList, FrozenDict, FrozenList, freeze, thaw


def records(n):
    return [{"id": i, "name": f"user{i}", "score": i / 4, "active": i % 2 == 0,
             "tags": [f"t{j}" for j in range(i % 4)], "kind": ("a", "b")[i % 2]}
            for i in range(n)]


def test_reads_of_every_kind():
    plain = records(50)
    f = freeze(plain)
    for i, r in enumerate(f):
        assert r == plain[i] and len(r) == 6 and list(r) == list(plain[i])
        assert r["name"] == plain[i]["name"] and r.get("nope", 7) == 7 and "id" in r
        assert list(r["tags"]) == plain[i]["tags"] and len(r["tags"]) == i % 4
        assert r["tags"][-1:] == plain[i]["tags"][-1:]
        with pytest.raises(KeyError):
            r["nope"]
        assert 1 not in r and r.get(1) is None
    assert thaw(f) == plain


def test_a_str_subclass_probe_finds_a_packed_key():
    class S(str):
        pass
    r = freeze([{"id": 1}])[0]
    assert S("id") in r and r[S("id")] == 1


def test_lone_surrogate_probe_is_absent():
    r = freeze([{"id": 1}])[0]
    assert "\ud800" not in r and r.get("\ud800") is None


def test_two_views_of_one_packed_record_see_each_others_writes():
    f = freeze(records(3))
    a, b = f[1], f[1]
    a["name"] = "x"
    assert b["name"] == "x" and f[1]["name"] == "x"
    b["tags"].append("new")
    assert a["tags"][-1] == "new" and f[1]["tags"][-1] == "new"


@pytest.mark.parametrize("key", ["k", "ключ", 7, -(2 ** 70)])
@pytest.mark.parametrize("packed", [True, False])
def test_a_view_keeps_the_key_it_was_read_by(key, packed):
    """A view read by d[key] or out of d.items() keeps the key object and
    converts it to the stored key only when a write or a resync needs it:
    writes go back under that key, and a view of a parent that moved on
    finds its slot by it.  (int keys keep their records general.)"""
    plain = {"a": 1, key: {"n": 0, "l": [1]}} if packed else {key: {"n": 0, "l": [1]}, 1.5: 0}
    for read in (lambda d: d[key], lambda d: dict(d.items())[key]):
        d = freeze([plain])[0]
        v = read(d)
        v["n"] = 1                                  # written back under key
        assert d[key]["n"] == 1 and thaw(d)[key]["n"] == 1
        w = read(d)
        d[key]["l"].append(2)                       # the parent moves on
        assert list(w["l"]) == [1, 2]               # w resyncs by key
        d[key] = {"n": 9}                           # another container at key
        assert w["n"] == 1 and d[key]["n"] == 9     # w detached
        assert set(d) == set(plain)


def test_a_view_follows_its_slot_to_another_version_of_itself():
    f = freeze(records(3))
    old = f.copy()                      # shares the packed records
    v = f[2]
    v["name"] = "changed"
    f[2] = old[2]                       # the same record, as it was: same identity
    assert v["name"] == "user2"         # the view follows the slot, as for any container
    v["id"] = -1
    assert f[2]["id"] == -1 and old[2]["id"] == 2


def test_a_view_follows_its_slot_when_the_new_version_reuses_a_freed_pack():
    # A view materialised from its slot's pack remembered the pack by its
    # address alone.  Once that pack was freed, a new version of the same
    # record packed at the same address passed for the old one: the view
    # kept its stale content, and its next write put the old fields back.
    # Each version here is remembered by a view of its own, so that the last
    # one, wherever malloc puts it, is likely at a remembered address.
    rows = CowList([{"a": 0, "b": 1}])
    views = []
    for n in range(1, 40):
        views.append(rows[0])
        list(reversed(views[-1]))       # materialised (reversed needs the general form)
        c = rows.copy()
        c[0]["a"] = n                   # the same record (identity), changed
        rows[0:1] = [c[0]]              # packed again, into a new node
    for v in views:
        assert v == {"a": 39, "b": 1} == rows[0]
    views[0]["z"] = 1
    assert rows[0] == {"a": 39, "b": 1, "z": 1}


def test_a_view_detaches_when_its_slot_holds_another_record():
    f = freeze(records(3))
    v = f[0]
    f[0] = {"id": 99}
    v["id"] = 5                         # detached: f is unchanged
    assert f[0] == {"id": 99} and v["id"] == 5


def test_copies_are_independent():
    f = freeze(records(4))
    c, d = f.copy(), copy.deepcopy(f)
    f[3]["tags"].append("z")
    f[0]["score"] = None
    assert c == d == freeze(records(4)) and f != c


def test_frozen_parents_give_frozen_records_that_hash_as_general_ones():
    plain = records(5)
    fl = FrozenList(plain)
    r = fl[3]
    assert isinstance(r, FrozenDict) and isinstance(r["tags"], FrozenList)
    general = FrozenDict({k: (FrozenList(v) if isinstance(v, list) else v) for k, v in plain[3].items()})
    assert r == general and hash(r) == hash(general)
    with pytest.raises(cowstore.FrozenError):
        r["id"] = 1
    assert {r: 1}[general] == 1


def test_pickle_and_diff():
    f = freeze(records(10))
    assert pickle.loads(pickle.dumps(f)) == f
    g = f.copy()
    g[4]["name"] = "renamed"
    del g[7]["kind"]
    changes = {c.path: (c.old, c.new) for c in cowstore.diff(f, g)}
    assert changes == {(4, "name"): ("user4", "renamed"), (7, "kind"): ("b", cowstore.MISSING)}


def test_store_round_trip_in_a_fresh_process(tmp_path):
    path = str(tmp_path / "recs.cow")
    with cowstore.open(path) as s:
        s["recs"] = freeze(records(300))
    code = textwrap.dedent(f"""
        import cowstore
        s = cowstore.open({path!r}, readonly=True)
        recs = s["recs"]
        assert recs[123]["name"] == "user123" and recs[3]["tags"] == ["t0", "t1", "t2"]
        print(sum(r["id"] for r in recs), len(cowstore.thaw(recs)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(sum(range(300))), "300"]


def test_stored_record_written_and_committed_again(tmp_path):
    with cowstore.open(str(tmp_path / "s.cow")) as s:
        s["recs"] = records(100)
        recs = s["recs"]
        recs[10]["tags"].append("added")
        s["recs"] = recs
        assert s["recs"][10]["tags"] == ["t0", "t1", "added"]
        assert s["recs"][11] == records(100)[11]



# ---- a written record goes back packed into its slot (pack.h P1) -------------


def _bytes_per_record(build, write):
    """tracemalloc bytes per record of build()'s records, after write(records)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        recs = build()
        write(recs)
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / len(recs), recs
    finally:
        tracemalloc.stop()


def test_writing_every_record_keeps_them_packed():
    """One write into each record, through the views a loop gives: each goes
    back into its slot packed (~1.5x its batched size; general maps took
    ~6x, as before the repack).  The scalar goes through cow_pack_with_field,
    the append through a materialisation packed again."""
    def none(recs):
        pass

    def write_each(recs):
        for r in recs:
            r["score"] = -1.0
            r["tags"].append("w")           # a nested list, written back through r
    base, _ = _bytes_per_record(lambda: freeze(records(2000)), none)
    written, recs = _bytes_per_record(lambda: freeze(records(2000)), write_each)
    assert written < 2 * base, f"{written:.0f} B/record written, {base:.0f} packed"
    assert thaw(recs) == [dict(r, score=-1.0, tags=r["tags"] + ["w"]) for r in records(2000)]


def test_many_writes_through_one_view_stay_right_and_bounded():
    f = freeze(records(64))
    r = f[5]
    for i in range(2000):
        r["id"] = i
        r["name"] = "n" * (i % 20)          # widths change: the pack is rewritten
    assert f[5]["id"] == 1999 and f[5]["name"] == "n" * 19 and r == f[5]
    assert thaw(f[4]) == records(64)[4] and thaw(f[6]) == records(64)[6]
    g = copy.deepcopy(f)
    r["id"] = -1
    assert g[5]["id"] == 1999 and f[5]["id"] == -1


def test_views_of_a_repacked_record_follow_it():
    """Repacking keeps every identity: a view of the record, and one of its
    nested list, still see and write the very containers."""
    f = freeze(records(8))
    r, t = f[3], f[3]["tags"]
    r["score"] = 9.5                        # r goes back packed
    t.append("x")
    assert f[3]["tags"][-1] == "x" and r["tags"][-1] == "x"
    other = f[3]
    other["active"] = None
    assert r["active"] is None and t[-1] == "x"
    t.append("y")
    assert other["tags"][-2:] == ["x", "y"] and f[3]["score"] == 9.5


def test_a_view_of_a_replaced_nested_container_detaches():
    """A container assigned into a record is another container: a view of
    the one it replaced detaches, and writes through it change nothing the
    record holds (a pack derives nested identities from positions, so the
    record stays general rather than pass the new one for the old)."""
    for replace in (lambda r: r.__setitem__("tags", ["new"]),
                    lambda r: r.__setitem__("tags", freeze(["new"])),
                    lambda r: r.__setitem__("tags", CowList(["new"]))):
        f = freeze(records(8))
        r = f[3]
        t = r["tags"]
        replace(r)
        f[3]["score"] = 2.0                 # another view writes: r and t resync from the slot
        t.append("detached")
        assert list(f[3]["tags"]) == ["new"] and list(t) == ["t0", "t1", "t2", "detached"]
        r["score"] = 1.0                    # later writes keep it right
        t.append("again")
        assert list(f[3]["tags"]) == ["new"] and f[3]["score"] == 1.0 and list(r["tags"]) == ["new"]


def test_nested_records_are_repacked_level_by_level():
    f = freeze([{"a": {"b": 1, "l": [1], "c": {"d": 0}}, "z": 0} for _ in range(4)])
    v = f[2]["a"]
    w = v["c"]
    v["b"] = 2
    w["d"] = 5
    v["l"].append(2)
    assert thaw(f[2]) == {"a": {"b": 2, "l": [1, 2], "c": {"d": 5}}, "z": 0}
    assert thaw(f[1]) == {"a": {"b": 1, "l": [1], "c": {"d": 0}}, "z": 0}
    v["c"] = {"d": 7}                       # replaced: w detaches
    w["d"] = 6
    assert f[2]["a"]["c"]["d"] == 7 and w["d"] == 6


def test_a_record_that_no_longer_packs_stays_general_and_right():
    f = freeze(records(8))
    r = f[1]
    r["s"] = {1, 2}                         # a set: no pack holds it
    r["id"] = 100
    assert f[1]["s"] == {1, 2} and f[1]["id"] == 100
    for i in range(40):                     # past 32 entries
        r[f"k{i}"] = i
    del r["s"]
    assert len(f[1]) == 6 + 40 and f[1]["k39"] == 39


def test_stored_record_written_through_a_view_is_committed_packed(tmp_path):
    path = str(tmp_path / "s.cow")
    with cowstore.open(path) as s:
        s["recs"] = records(200)
        recs = s["recs"]
        r = recs[7]
        r["name"] = "written"
        r["tags"].append("more")
        s["recs"] = recs
    with cowstore.open(path, readonly=True) as s:
        got = thaw(s["recs"])
    want = records(200)
    want[7]["name"] = "written"
    want[7]["tags"].append("more")
    assert got == want


# ---- batches: the records of one vector leaf share a node (pack.h P6) ----------


def test_records_of_one_batch_stay_distinct():
    """Two records of one batch share a node, not an identity: moving one into
    the other's slot is a change to diff, equality, views and writes."""
    f = freeze(records(40))
    g = CowList(f)
    v3 = g[3]
    g[3] = g[5]                         # a sibling of the same batch
    assert f != g and g[3] == f[5]
    assert {c.path[0] for c in cowstore.diff(f, g)} == {3}
    assert v3 == f[3]                   # the view of slot 3 detached, unchanged
    g[3]["name"] = "changed"
    assert g[5]["name"] == "user5" and f[3]["name"] == "user3" and f[5]["name"] == "user5"
    v5 = g[5]
    g[5] = f[6]
    assert v5["name"] == "user5" and g[5]["name"] == "user6"


def test_map_values_are_batched_too():
    plain = {f"k{i}": r for i, r in enumerate(records(100))}
    d = CowDict(plain)
    assert thaw(d) == plain
    d["k3"] = d["k4"]
    assert d["k3"] == plain["k4"] and d != CowDict(plain)
    assert {c.path for c in cowstore.diff(CowDict(plain), d)} >= {("k3", "id")}


def test_stored_batches_read_written_and_pickled(tmp_path):
    with cowstore.open(str(tmp_path / "s.cow")) as s:
        s["recs"] = records(100)
        recs = s["recs"]
        r = recs[7]
        assert pickle.loads(pickle.dumps(r)) == records(100)[7]
        s["one"] = recs[40]             # a member alone as a root
        recs[40], recs[41] = recs[41], recs[40]
        s["recs"] = recs
        assert s["one"] == records(100)[40]
        assert [x["id"] for x in s["recs"][38:43]] == [38, 39, 41, 40, 42]
        assert s["recs"] != records(100)
        s.compact()
        assert thaw(s["recs"])[41]["id"] == 40 and s["one"]["id"] == 40


def test_repeated_strs_of_a_batch_read_back_as_themselves(tmp_path):
    """Strs the records of a batch repeat are stored once per node by word
    (pack.h P7); short and long, they read, compare, hash, diff, thaw and
    round-trip through a store as the strs they are."""
    statuses = ("pending", "an archived status longer than fourteen bytes", "x")
    plain = [{"id": i, "status": statuses[i % 3], "tags": [statuses[(i + 1) % 3], "blue"]}
             for i in range(100)]
    f = freeze(plain)
    assert thaw(f) == plain and f == plain
    assert [r["status"] for r in f] == [r["status"] for r in plain]
    assert type(f[1]["status"]) is str and f[1]["tags"][1] == "blue"
    fl = FrozenList(plain)
    assert hash(fl[4]) == hash(FrozenDict({**plain[4], "tags": FrozenList(plain[4]["tags"])}))
    g = f.copy()
    g[10]["status"] = "pending"
    assert {c.path for c in cowstore.diff(f, g)} == {(10, "status")}
    with cowstore.open(str(tmp_path / "s.cow")) as s:
        s["recs"] = f
        assert thaw(s["recs"]) == plain and s["recs"][5]["tags"] == plain[5]["tags"]
        assert pickle.loads(pickle.dumps(s["recs"][7])) == plain[7]


def test_slices_of_a_packed_list_read_out_of_a_container():
    # A packed list's slice used to read its pack as a general vector (a crash).
    f = freeze([[1, 2, 3], [4], []])
    assert f[0][0:2] == [1, 2] and f[0][::-1] == [3, 2, 1] and f[2][-1:] == []
    c = CowList([[1, 2, 3], [4]])
    c[0][::2] = ["a", "b"]
    assert c == [["a", 2, "b"], [4]]
    del c[1][::1]
    assert c == [["a", 2, "b"], []]


def test_a_nested_container_read_in_place_is_a_live_view():
    f = FrozenList(records(6))                   # frozen: nested reads stay frozen
    assert type(f[3]["tags"]) is FrozenList and f[3]["tags"] == ["t0", "t1", "t2"]
    rows = CowList(records(6))
    r = rows[3]
    tags, again = r["tags"], r["tags"]
    assert type(tags) is CowList and tags == ["t0", "t1", "t2"] and tags[1:] == ["t1", "t2"]
    tags.append("t3")
    assert again == ["t0", "t1", "t2", "t3"] and rows[3]["tags"][-1] == "t3"
    assert r == dict(records(6)[3], tags=["t0", "t1", "t2", "t3"])
    r["tags"] = ["x"]                            # the slot replaced: the old view detaches
    assert tags == ["t0", "t1", "t2", "t3"] and rows[3]["tags"] == ["x"]


def test_iterating_a_packed_record_reads_it_in_place():
    rows = CowList(records(8))
    first, second = rows[2], rows[4]
    assert list(first) == list(records(8)[2])
    assert [k for k in first][0] is [k for k in second][0], "one key object per shape"
    assert list(first.values()) == list(records(8)[2].values())
    assert dict(first.items()) == records(8)[2]
    for k, v in first.items():                   # nested values write back
        if k == "tags":
            v.append("new")
    assert rows[2]["tags"] == ["t0", "t1", "new"]
    it = iter(second.items())
    next(it)
    second["name"] = "changed"                   # the iterator reads its snapshot
    rest = dict(it)
    assert rest["name"] == "user4" and rest["tags"] == []
    assert list(reversed(rows[5])) == list(reversed(records(8)[5]))
    assert list(iter(rows[3])) == list(records(8)[3]) and iter(rows[3]).__length_hint__() == 6


def test_a_loop_over_records_makes_each_view_over_once_nothing_holds_it():
    """A list iterator makes the view it made two records ago over for the
    next record when only the iterator holds it (iter.c record_view): a loop
    makes three view objects, not one per record.  A view anyone holds is
    never made over, and each reads and writes its own record."""
    rows = freeze(records(100))
    it = iter(rows)
    first, second = next(it), next(it)
    made = id(first)
    del first                                   # only the iterator holds it now
    others = [CowDict() for _ in range(4)]      # would take its memory, were it freed
    third = next(it)
    assert id(third) == made and third == rows[2] and second == rows[1], "not made over"
    del others
    for i, r in enumerate(rows):                # writes go to the record r came from
        r["id"] = -i
    assert [r["id"] for r in rows] == [-i for i in range(100)]
    kept = list(rows)                           # held: all distinct, each its own
    assert len({id(r) for r in kept}) == 100
    kept[3]["name"] = "three"
    assert rows[3]["name"] == "three" and kept[3] == rows[3] and kept[4] == rows[4]
    it = iter(rows)
    a, b, c, d = next(it), next(it), next(it), next(it)
    assert (a["score"], b["score"], c["score"], d["score"]) == (0, 0.25, 0.5, 0.75)
    a["tags"].append("x")
    assert rows[0]["tags"] == ["x"]


def test_a_made_over_view_resyncs_when_the_list_moved_on():
    """A record replaced after the loop started: the view made for its index,
    made over from an earlier one, behaves as a new view does -- it reads the
    iterator's snapshot, and finding another record in its slot it detaches
    (a write through it stays in it) -- while the records not replaced stay
    attached."""
    rows = freeze(records(10))
    plain = thaw(records(10))
    for i, r in enumerate(rows):
        if i == 2:
            rows[6] = {"id": 60, "name": "new"}
        assert dict(r) == plain[i]
        r["score"] = -1
    assert rows[6] == {"id": 60, "name": "new"}
    assert [rows[i]["score"] for i in (0, 5, 7, 9)] == [-1] * 4
    frozen = FrozenList(records(5))             # frozen records: detached, made over too
    assert [type(r) for r in frozen] == [FrozenDict] * 5
    assert [r["id"] for r in frozen] == list(range(5))


def test_thawed_records_share_their_key_objects():
    # As json.loads' key memo: one str per key, not one per key per record.
    plain = thaw(freeze(records(50)))
    assert plain == records(50)
    assert all(list(r)[1] is list(plain[0])[1] for r in plain)
    general = thaw(CowDict({f"k{i}": {"name": i} for i in range(40)}))
    assert list(general["k3"])[0] is list(general["k4"])[0]


def test_a_repeated_str_reads_back_as_one_object():
    rows = freeze([{"id": i, "status": ("active", "pending")[i % 2]} for i in range(64)])
    assert rows[0]["status"] is rows[2]["status"] and rows[1]["status"] == "pending"
    plain = thaw(rows)
    assert plain[0]["status"] is plain[4]["status"] and plain[3]["status"] == "pending"


def test_records_of_other_shapes_written_over_one_another_read_their_own_fields(tmp_path):
    # Each commit puts the new record's shape where the old one's was: a
    # field read remembered the old shape's "tags" (second key, at byte 16)
    # and, the new shape holding "tags" at byte 16 as its third key, read
    # the second field (field hints, csrc/core/pack.c).
    with cowstore.open(str(tmp_path / "s")) as s:
        for _ in range(8):
            for rec in ({"": 1, "x" * 14: 2, "tags": "A"},
                        {"y" * 15: 1, "tags": "B", "b": None}):
                s["y"] = [rec]
                assert s["y"][0]["tags"] == rec["tags"]
                assert dict(s["y"][0]) == rec


def test_one_key_object_reads_records_of_many_shapes():
    # A field read remembers, per key object, where the key lay in the last
    # shape it was found in (csrc/python/field_memo.c): records whose shapes
    # hold the key at other positions, or not at all, read in turn, and
    # shapes that change under writes, must each read their own field.
    keys = ("a", "b", "c", "d")
    orders = [keys, keys[::-1], ("c", "a", "d", "b"), ("b", "d"), ("d", "c", "a")]
    plain = [{k: f"{k}{i}" for k in orders[i % len(orders)]} for i in range(40)]
    frozen = freeze(plain)
    views = list(frozen)
    for _ in range(3):
        for k in keys:
            for r, p in zip(views, plain):
                assert r.get(k) == p.get(k) and (k in r) == (k in p)
    for i, (r, p) in enumerate(zip(views, plain)):
        if i % 3 == 0:
            r["a"] = p["a"] = -i                # a field of the shape, or a new key
        elif i % 3 == 1 and "b" in p:
            del r["b"], p["b"]
    for k in keys:
        assert [r.get(k) for r in frozen] == [p.get(k) for p in plain]
        assert [r.get(k) for r in views] == [p.get(k) for p in plain]


def test_field_memos_hold_a_bounded_number_of_keys():
    # Each memo holds its key object: a program reading through many key
    # objects keeps at most the table's 256 of them alive.
    r = freeze([{"ab": 1, "b": 2}])[0]
    probes = [("ab" + str(i))[:2] for i in range(2000)]      # 2,000 objects "ab"
    assert len({id(p) for p in probes}) == len(probes)
    before = [sys.getrefcount(p) for p in probes]
    for p in probes:
        assert r[p] == 1
    del p
    after = [sys.getrefcount(p) for p in probes]
    held = sum(a > b for a, b in zip(after, before))
    assert 0 < held <= 256
