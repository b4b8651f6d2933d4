"""Differential tests of store-backed containers (part 1's idea, with a store).

Each state machine holds a store in a temporary file, a plain model (dict,
list or set) and the cowstore container being edited.  Rules apply the
part-1 random operations (tests/python/test_differential.py: same value
strategies, same mutation functions, same exact comparison) to both sides,
and add the store's own steps:

- commit: ``store[name] = container``, then continue with the container or
  with ``store[name]`` read back;
- reopen: close the store and open it again, then read the root back (or
  keep editing the value read before the close, which must stay usable);
- copy: ``container.copy()`` equals a deep copy of the model, and the two
  are independent afterwards;
- transactions that commit or abort, compaction, and snapshots (values read
  earlier) that later commits must not change.

Invariants after every step: thaw(container) is exactly the model, and the
store's root is exactly the last committed model.
"""
import copy
import itertools
import os

import pytest

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import cowstore
from cowstore import CowDict, CowList, CowSet, thaw
from test_differential import (assert_same, draw_path, follow, keys, list_items, mutate,
                               nested_dicts, same)

MAX_SNAPSHOTS = 3


class Aborted(Exception):
    """Raised inside a transaction to make it abort."""


class StoreMachine(RuleBasedStateMachine):
    """A store, a root name, the container being edited and its model."""

    KIND = None                   # CowDict, CowList or CowSet
    DIR = None                    # set by the module fixture below
    _count = itertools.count()

    def __init__(self):
        super().__init__()
        # One store file per machine class, one fresh root per example:
        # reopening a path reuses its environment, so examples never run
        # into the per-process limit on open stores (a failing example's
        # traceback keeps store-backed values, and so their store, alive).
        self.path = os.path.join(self.DIR, f"{type(self).__name__}.cow")
        self.name = f"root{next(self._count)}"
        self.store = cowstore.open(self.path, durable=False)
        self.snapshots = []       # (value read from the store, model at the time)
        self.c = self.m = self.committed = None
        self.dirty = False        # committed since the last compaction

    def teardown(self):
        self.c = None
        self.snapshots.clear()
        try:
            if self.store.closed:
                self.store = cowstore.open(self.path, durable=False)
            if self.name in self.store:
                del self.store[self.name]
        finally:
            self.store.close()

    def start_with(self, init):
        self.store[self.name] = init
        self.c = self.store[self.name]
        assert type(self.c) is self.KIND
        self.m = copy.deepcopy(init)
        self.committed = copy.deepcopy(init)

    # -- the part-1 operations ------------------------------------------------
    @rule(data=st.data())
    def mutate_root(self, data):
        mutate(data, self.c, self.m)

    @rule(data=st.data())
    def nested_mutation(self, data):
        """Writes through views of nested containers (d[k][k2] = v ...)."""
        path, node = draw_path(data, self.m)
        if path is None:
            return
        view = follow(data, self.c, path)
        assert_same(view, node)
        for _ in range(data.draw(st.integers(1, 3), label="writes")):
            mutate(data, view, node)
            assert_same(view, node)

    # -- the store's steps --------------------------------------------------------
    @rule(reread=st.booleans())
    def commit(self, reread):
        self.store[self.name] = self.c
        self.committed = copy.deepcopy(self.m)
        self.dirty = True
        got = self.store[self.name]
        assert type(got) is self.KIND
        assert_same(got, self.committed)
        if reread:
            self.c = got

    @rule(keep_value=st.booleans())
    def reopen(self, keep_value):
        """Close and open again: the root is what was committed; a value read
        before the close stays readable and can be committed afterwards."""
        self.store.close()
        assert self.store.closed
        self.store = cowstore.open(self.path, durable=False)
        assert self.name in self.store
        assert_same(self.store[self.name], self.committed)
        if not keep_value:
            self.c = self.store[self.name]
            self.m = copy.deepcopy(self.committed)

    @rule(data=st.data(), continue_with_copy=st.booleans())
    def take_copy(self, data, continue_with_copy):
        """copy() equals a deep copy of the model; editing one of them then
        leaves the other as it was."""
        dup = self.c.copy()
        dup_model = copy.deepcopy(self.m)
        assert type(dup) is self.KIND and dup is not self.c
        assert_same(dup, dup_model)
        if continue_with_copy:
            mutate(data, self.c, self.m)                # the original changes...
            assert_same(dup, dup_model)                 # ...the copy does not
            self.c, self.m = dup, dup_model
        else:
            mutate(data, dup, dup_model)
            assert_same(dup, dup_model)

    @rule()
    def snapshot(self):
        self.snapshots.append((self.store[self.name], copy.deepcopy(self.committed)))
        del self.snapshots[:-MAX_SNAPSHOTS]

    @rule(data=st.data())
    def aborted_transaction(self, data):
        """Writes inside a transaction are seen inside and discarded by an
        exception."""
        try:
            with self.store.transaction():
                self.store[self.name] = self.c
                self.store[self.name + "-other"] = [1]
                with self.store.transaction():
                    assert_same(self.store[self.name], self.m)
                    mutate(data, self.c, self.m)
                raise Aborted
        except Aborted:
            pass
        assert self.name + "-other" not in self.store
        assert_same(self.store[self.name], self.committed)

    @rule(data=st.data())
    def read_modify_write_transaction(self, data):
        """A transaction reading the root, changing it and writing it back
        commits exactly that change."""
        with self.store.transaction():
            self.store[self.name] = self.c
            inner = self.store[self.name]
            assert_same(inner, self.m)
            mutate(data, inner, self.m)
            self.store[self.name] = inner
        self.committed = copy.deepcopy(self.m)
        self.dirty = True
        self.c = self.store[self.name]

    @precondition(lambda self: self.dirty)
    @rule()
    def compact(self):
        """Compaction rewrites every root: the container (whose unchanged
        parts name the old segments) must still commit afterwards."""
        self.store.compact()
        self.dirty = False
        assert_same(self.store[self.name], self.committed)

    # -- invariants -----------------------------------------------------------------
    @invariant()
    def container_matches_model(self):
        if self.c is not None:
            assert type(self.c) is self.KIND
            assert len(self.c) == len(self.m)
            assert self.c == self.m
            assert_same(self.c, self.m)

    @invariant()
    def store_holds_the_last_commit(self):
        if self.committed is not None:
            assert_same(self.store[self.name], self.committed)

    @invariant()
    def snapshots_never_change(self):
        for value, model in self.snapshots:
            assert same(thaw(value), model)


class StoreDictMachine(StoreMachine):
    KIND = CowDict

    @initialize(init=nested_dicts)
    def start(self, init):
        self.start_with(init)

    @invariant()
    def same_order_and_key_types(self):
        if self.c is not None:
            assert [type(thaw(k)) for k in self.c] == [type(k) for k in self.m]
            assert list(self.c.items()) == list(self.m.items())


class StoreListMachine(StoreMachine):
    KIND = CowList

    @initialize(init=st.lists(list_items, max_size=8))
    def start(self, init):
        self.start_with(init)


class StoreSetMachine(StoreMachine):
    KIND = CowSet

    @initialize(init=st.sets(keys, max_size=8))
    def start(self, init):
        self.start_with(init)


@pytest.fixture(scope="module", autouse=True)
def _store_dir(tmp_path_factory):
    StoreMachine.DIR = str(tmp_path_factory.mktemp("store-diff"))
    yield
    StoreMachine.DIR = None


TestStoreDict = StoreDictMachine.TestCase
TestStoreList = StoreListMachine.TestCase
TestStoreSet = StoreSetMachine.TestCase
# sets have fewer operations and no nesting: half the profile's examples
TestStoreSet.settings = settings(settings.default,
                                 max_examples=max(10, settings.default.max_examples // 2))
