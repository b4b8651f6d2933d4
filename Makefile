# cowstore — every target works from nothing on a fresh machine: it installs the
# Debian packages it needs (when root), makes .venv, and builds the extension.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CC     ?= gcc
CORE_SRC := $(sort $(wildcard csrc/core/*.c))
CORE_HDR := $(wildcard csrc/include/cowstore/*.h csrc/core/*.h)
CTESTS   := $(patsubst tests/c/%.c,tests/c/bin/%,$(sort $(wildcard tests/c/test_*.c)))
# The C core's tests always run instrumented: they are small, and ASan/UBSan/LSan
# turn a silent memory bug into a failing test.
CTEST_FLAGS := -std=c11 -g -O1 -Wall -Wextra -Wno-unused-parameter -Icsrc/include \
               -DCOW_DEBUG=1 -fsanitize=address,undefined -fno-sanitize-recover=undefined \
               -fno-omit-frame-pointer
HYPOTHESIS_PROFILE ?= ci
# The PyTorch recipe (examples/torch_dataset.py) is tested with real torch where
# the machine keeps a CPU wheel on disk (~30 s, ~0.8 GiB in .venv); elsewhere its
# test runs the recipe's multiprocessing fallback instead of downloading torch
# from PyPI, whose default build pulls several GB of CUDA libraries.
TORCH_WHEEL ?= /opt/wheels/torch-2.13.0+cpu-*.whl

SHELL := /bin/bash

.PHONY: all deps venv build demo test ctest pytest test-sanitize test-debug bench clean

all: build

deps:
	@if [ ! -f /usr/include/lmdb.h ] || [ ! -f /usr/include/criterion/criterion.h ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq liblmdb-dev libcriterion-dev; \
	  else echo "need liblmdb-dev libcriterion-dev (run as root or install them)"; exit 1; fi; \
	fi

$(VENV)/.installed: setup.cfg setup.py pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@$(PY) -m pip install -q -e '.[test,dask,ray]' \
	  || echo "dask or ray did not install: tests/python/test_clusters.py skips their engines"
	@if ls $(TORCH_WHEEL) >/dev/null 2>&1; then $(PY) -m pip install -q 'torch==2.13.0' \
	  || echo "torch did not install: the DataLoader recipe is tested with its fallback"; fi
	touch $@

venv: $(VENV)/.installed

build: venv
	$(PY) setup.py -q build_ext --inplace

demo: build
	$(PY) bench/demo.py

tests/c/bin/%: tests/c/%.c $(wildcard tests/c/*.h) $(CORE_SRC) $(CORE_HDR) | deps
	@mkdir -p tests/c/bin
	$(CC) $(CTEST_FLAGS) -o $@ $< $(CORE_SRC) -lcriterion -llmdb -lm

ctest: $(CTESTS)
	@mkdir -p build
	@set -e; for t in $(CTESTS); do echo "== $$t"; ASAN_OPTIONS=detect_leaks=1 $$t --jobs 2; done 2>&1 \
	  | tee build/ctest.log; exit $${PIPESTATUS[0]}

pytest: build
	@mkdir -p build
	HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) $(VENV)/bin/pytest -q -p no:cacheprovider \
	  --junitxml=build/pytest.xml tests/python

# Runs both suites, then closes with their counts added up.
test: ctest pytest
	@$(PY) tests/summary.py build/ctest.log build/pytest.xml

# The extension and the whole pytest suite under ASan + UBSan.  CPython itself is
# not instrumented, so libasan is preloaded and leak reports (CPython's own
# interned objects at exit) are off; the refcount/tracemalloc leak tests cover leaks.
# Ray is skipped there: its daemons inherit the preload and may not start in time.
# The instrumented module replaces the in-place one for the run (the editable
# install would shadow any other location) and the normal build is restored.
# PYTHONMALLOC=malloc sends Python objects to ASan's allocator too: under
# pymalloc a freed object's memory stays mapped in its arena, so a read of a
# freed view or parent went unseen (~2x the run time).
ASAN_LIB = $(shell $(CC) -print-file-name=libasan.so)
UBSAN_LIB = $(shell $(CC) -print-file-name=libubsan.so)
SANITIZED_RUN = COWSTORE_SANITIZED_RUN=1 PYTHONMALLOC=malloc LD_PRELOAD="$(ASAN_LIB) $(UBSAN_LIB)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
test-sanitize: venv
	COWSTORE_SANITIZE=1 $(PY) setup.py -q build_ext --inplace --force --build-temp build/asan-tmp
	@nm -D cowstore/_cowstore*.so | grep -q __asan_report || { echo "extension is not instrumented"; exit 1; }
	@set +e; $(SANITIZED_RUN) HYPOTHESIS_PROFILE=ci $(VENV)/bin/pytest -q -p no:cacheprovider tests/python; \
	  rc=$$?; $(PY) setup.py -q build_ext --inplace --force; exit $$rc

# The suite against a -O0 build whose every write re-validates the core's
# invariants (COW_DEBUG): a broken invariant fails the write with SystemError.
test-debug: venv
	COWSTORE_DEBUG=1 $(PY) setup.py -q build_ext --inplace --force --build-temp build/debug-tmp
	@set +e; HYPOTHESIS_PROFILE=ci $(VENV)/bin/pytest -q -p no:cacheprovider tests/python; \
	  rc=$$?; $(PY) setup.py -q build_ext --inplace --force; exit $$rc

bench: build
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run_all.py

clean:
	rm -rf build tests/c/bin cowstore/*.so *.egg-info
