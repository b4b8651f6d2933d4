"""A program for test_stub.py: the documented API (docs/api.md) as a user
types it.  ``mypy --strict`` must accept every line but those marked ``# E``
and infer the types marked ``# R:``; run, the lines marked ``# E: TypeError``
raise it (FrozenError is one) and the ``# R:`` values are of those classes.
The other ``# E`` lines run but break the annotations (a subclass's copy()
is the package's type, as dict's is)."""
import copy
import os
import pickle
import shutil
import tempfile
from typing import AbstractSet, Any, Dict, Hashable, List, Mapping, MutableMapping, MutableSequence, MutableSet, Optional, Sequence

import cowstore
from cowstore import CowDict, CowList, CowSet, FrozenDict, FrozenList, FrozenSet


class Sub(CowDict[str, int]):
    pass


class LSub(CowList[int]):
    pass


class SSub(CowSet[int]):
    pass


def takes_mapping(m: Mapping[str, int]) -> int:
    return len(m)


def takes_mutable(m: MutableMapping[str, int]) -> None:
    m["x"] = 1


def takes_seq(s: Sequence[int]) -> int:
    return s[0]


def takes_mseq(s: MutableSequence[int]) -> None:
    s.append(1)


def takes_set(s: AbstractSet[int]) -> bool:
    return 1 in s


def takes_mset(s: MutableSet[int]) -> None:
    s.add(1)


d = CowDict(a=1, b=2)
reveal_type(d)  # R: CowDict[str, int]
fd = FrozenDict(a=1)
reveal_type(fd)  # R: FrozenDict[str, int]
fd2 = FrozenDict(d)
reveal_type(fd2)  # R: FrozenDict[str, int]
d2: CowDict[str, int] = CowDict({"a": 1}, b=2)
d3 = CowDict([("a", 1)])
reveal_type(d3)  # R: CowDict[str, int]
empty: CowDict[str, int] = CowDict()
takes_mapping(d)
takes_mapping(fd)
takes_mutable(d)
d["c"] = 3
del d["c"]
x1: Optional[int] = d.get("a")
x2: int = d.get("a", 0)
x3: int = d.pop("a")
x4: int = d.pop("a", 0)
k, v = d.popitem()
x5: int = d.setdefault("z", 5)
dn: CowDict[str, Optional[int]] = CowDict()
x6: Optional[int] = dn.setdefault("z")
d.update({"a": 1})
d.update([("a", 1)])
d.update(a=1)
d.update(d2, a=1)
d |= {"q": 1}
d |= [("q", 1)]
d.clear()
for key in d.keys():
    reveal_type(key)  # R: str
for val in d.values():
    reveal_type(val)  # R: int
for kk, vv in d.items():
    pass
for kk in reversed(d):
    pass
print("a" in d, len(d), list(iter(d)))
sub = Sub(a=1)
reveal_type(sub.copy())  # R: CowDict[str, int]
reveal_type(sub | {"b": 2})  # R: CowDict[str, int]
reveal_type({"b": 2} | sub)  # R: CowDict[str, int]
reveal_type(fd | {"b": 2})  # R: FrozenDict[str, int]
reveal_type({"b": 2} | fd)  # R: CowDict[str, int]
reveal_type(fd | d)  # R: FrozenDict[str, int]
reveal_type(d | {1: "x"})  # R: CowDict[str | int, int | str]
reveal_type(fd.copy())  # R: FrozenDict[str, int]
reveal_type(copy.copy(sub))  # R: stub_program.Sub
reveal_type(copy.deepcopy(sub))  # R: stub_program.Sub
reveal_type(CowDict.fromkeys(["a"], 1))  # R: CowDict[str, int]
reveal_type(FrozenDict.fromkeys(["a"]))  # R: FrozenDict[str, Any | None]
print(hash(fd), fd == d, pickle.dumps(d, protocol=5))
s1: Dict[str, int] = dict(d)

lst = CowList([1, 2, 3])
reveal_type(lst)  # R: CowList[int]
fl = FrozenList(lst)
takes_seq(lst)
takes_seq(fl)
takes_mseq(lst)
lsub = LSub([1])
reveal_type(lsub[0])  # R: int
reveal_type(lsub[0:1])  # R: CowList[int]
reveal_type(lsub + [4])  # R: CowList[int]
reveal_type([4] + lsub)  # R: CowList[int]
reveal_type(lsub * 2)  # R: CowList[int]
reveal_type(2 * lsub)  # R: CowList[int]
reveal_type(lsub.copy())  # R: CowList[int]
reveal_type(fl[0:1])  # R: FrozenList[int]
reveal_type(fl + lst)  # R: FrozenList[int]
reveal_type([1] + fl)  # R: CowList[int]
reveal_type(fl * 2)  # R: FrozenList[int]
reveal_type(fl.copy())  # R: FrozenList[int]
lsub += [5]
reveal_type(lsub)  # R: stub_program.LSub
lst += (6, 7)
lst *= 2
lst[0] = 1
lst[0:1] = [1, 2]
del lst[0]
del lst[0:1]
lst.append(1)
lst.extend([1])
lst.insert(0, 1)
lst.pop()
lst.pop(0)
lst.remove(1)
print(lst.index(1), lst.index(2, 0, 3), lst.count(1), 1 in lst, list(reversed(lst)))
lst.reverse()
lst.sort()
lst.sort(key=lambda i: -i, reverse=True)
print(lst < [1], lst <= fl, [1] > lst, hash(fl))
# == with the builtins, either side (mypy --strict rejects a comparison it thinks never true).
print(lst == [1], [1] != lst, fl == [1], fl == lst, [1] in [lst])
lst.clear()

cs = CowSet({1, 2})
fs = FrozenSet([1])
takes_set(cs)
takes_set(fs)
takes_mset(cs)
ssub = SSub({1})
reveal_type(ssub | {2})  # R: CowSet[int]
reveal_type(ssub & {2})  # R: CowSet[int]
reveal_type(ssub - {2})  # R: CowSet[int]
reveal_type(ssub ^ {2})  # R: CowSet[int]
reveal_type(ssub.union([2]))  # R: CowSet[int]
reveal_type(ssub.intersection([2]))  # R: CowSet[int]
reveal_type(ssub.difference([2]))  # R: CowSet[int]
reveal_type(ssub.symmetric_difference([2]))  # R: CowSet[int]
reveal_type(ssub.copy())  # R: CowSet[int]
reveal_type(fs | {2})  # R: FrozenSet[int]
reveal_type(fs & cs)  # R: FrozenSet[int]
reveal_type(fs.union(["a"]))  # R: FrozenSet[int | str]
reveal_type(fs.copy())  # R: FrozenSet[int]
print(cs == {1}, {1} == cs, fs == frozenset([1]), fs != cs, {1} in [cs])
ssub |= {3}
reveal_type(ssub)  # R: stub_program.SSub
cs &= {1}
cs -= fs
cs ^= {1}
cs.add(2)
cs.discard(3)
cs.remove(2)
cs.pop()
cs.update([1], {2})
cs.intersection_update([1])
cs.difference_update([1])
cs.symmetric_difference_update([1])
print(cs.issubset([1]), cs.issuperset([1]), cs.isdisjoint([1]), cs <= fs, cs < {1}, hash(fs))
cs.clear()

frozen: Any = cowstore.freeze({"a": [1]})
plain: Any = cowstore.thaw(frozen)
for ch in cowstore.diff(d, fd):
    print(ch.path, ch.old, ch.new, ch.kind, ch.old is cowstore.MISSING)
data: bytes = cowstore.parcel(d)
back: Any = cowstore.open_parcel(data)
back2: Any = cowstore.open_parcel(memoryview(data))


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


cowstore.register(Money, lambda m: m.cents, lambda cents: Money(cents))
cowstore.unregister(Money)
previous: Any = cowstore.set_fallback(pickle)
cowstore.set_fallback(previous)
store_dir = tempfile.mkdtemp()
with cowstore.open(os.path.join(store_dir, "s.cow"), map_size=1 << 20, durable=False) as store:
    store["a"] = d
    print(store["a"], store.get("a"), store.get("b", 1), "a" in store, len(store), list(store))
    names: List[str] = store.names()
    print(store.keys(), store.items(), store.values(), store.reserved_names())
    with store.transaction() as st:
        st["b"] = 1
        st.update({"c": 1}, d=2)
    with store.bulk_load():
        pass
    store.pop("b")
    store.pop("b", None)
    store.setdefault("e", 1)
    store.popitem()
    del store["c"]
    stats = store.stats()
    print(stats["roots"], stats["lmdb"]["roots"]["entries"], store.path, store.readonly,
          store.anonymous, store.closed)
    store.compact()
    store.clear()
shutil.rmtree(store_dir)
anon = cowstore.Store()
anon.close()
shared: Any = cowstore.share(d)
try:
    pass
except cowstore.FrozenError:
    pass
except (cowstore.CowstoreError, cowstore.StoreError, cowstore.ConflictError, cowstore.CorruptStoreError,
        cowstore.ReadonlyStoreError, cowstore.UnsupportedTypeError, cowstore.CycleError,
        cowstore.CowMemoryError, cowstore.CowValueError, cowstore.CowOverflowError):
    pass

# The wrong calls.
d.get("a", default=0)  # E: TypeError
d.pop("a", default=0)  # E: TypeError
d.setdefault("a", default=0)  # E: TypeError
d.setdefault("a")  # E  (gives None: d holds ints)
lst.index(1, start=0)  # E: TypeError
lst.pop(index=0)  # E: TypeError
lst.insert(index=0, value=1)  # E: TypeError
lst.append(value=1)  # E: TypeError
lst.extend(values=[1])  # E: TypeError
lst.count(value=1)  # E: TypeError
lst.remove(value=1)  # E: TypeError
cs.add(value=2)  # E: TypeError
cowstore.freeze(obj=1)  # E: TypeError
cowstore.thaw(obj=1)  # E: TypeError
CowDict.fromkeys(["a"], value=1)  # E: TypeError
CowList(iterable=[1])  # E: TypeError
fd["a"] = 1  # E: TypeError
fd.pop("a")  # E: TypeError
fl.append(1)  # E: TypeError
fs.add(1)  # E: TypeError
lst + (1,)  # E: TypeError
d | [("a", 1)]  # E: TypeError
sub2: Sub = sub.copy()  # E
lsub2: LSub = lsub[0:1]  # E
ssub2: SSub = ssub | {1}  # E
hashable: Hashable = d  # E
d["a"] = "x"  # E
