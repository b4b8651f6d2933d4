"""The recipes: every examples/*.py runs and checks itself, and docs/recipes.md quotes it.

Each example asserts its answers against a plain-Python computation and exits
non-zero on a mismatch.  Here each runs in a fresh interpreter from the repo
root, with warnings as errors (the suite's filterwarnings = error, carried into
worker processes through PYTHONWARNINGS), and must print its key lines.
docs/recipes.md quotes every example in full; the quote must equal the file.
"""
import glob
import importlib.util
import os
import re
import subprocess
import sys

import pytest

import cowstore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = os.path.join(ROOT, "docs", "recipes.md")
TIMEOUT = 120  # seconds per example; each takes a few by default
EXAMPLES = sorted(os.path.relpath(p, ROOT).replace(os.sep, "/")
                  for p in glob.glob(os.path.join(ROOT, "examples", "*.py")))
TWO_METHODS = [r"^fork: 2 workers, \d+ batches .* identical to the source rows$",
               r"^spawn: 2 workers, \d+ batches .* identical to the source rows$"]

# Lines (regular expressions) each example must print; timings are not checked.
EXPECTED = {
    "examples/undo_stack.py": [
        r"^session of \d+ steps \(\d+ edits, \d+ undos, \d+ redos\) .*"
        r"cowstore and plain documents equal after every step$",
        r"^one snapshot: .* ratio [\d,]+x$",
        r"^whole session: .* ratio [\d,]+x$"],
    "examples/search_tree.py": [
        r"^maze 21x21 with 4 gems: \d+ moves, \d+ states expanded$",
        r"^cowstore and deepcopy searches found the same path, and it collects every gem$",
        r"^search time: .* ratio [\d.]+x$"],
    "examples/process_pool.py": [
        r"^20000 documents: pickled as plain data [\d,]+ bytes, shared \d+ bytes",
        *(rf"^{api}, {method}: 2 workers, counts match serial$"
          for api in ("multiprocessing.Pool", "ProcessPoolExecutor")
          for method in ("fork", "spawn"))],
    "examples/torch_dataset.py --no-torch": [
        r"^loader: multiprocessing fallback \(--no-torch\)$",
        r"^dataset of 4096 rows pickles to \d+ bytes$", *TWO_METHODS],
    "examples/versioned_state.py": [
        r"^201 versions of 20000 users committed, the last 50 also kept in memory; ",
        r"^consecutive versions: \d+ changes; .* ratio [\d,]+x$",
        r"^first and last versions: \d+ changes; .* ratio [\d,]+x$"],
}
WITH_TORCH = ("examples/torch_dataset.py", [
    r"^loader: torch\.utils\.data\.DataLoader \(torch .*\)$", *TWO_METHODS[1:]])


def run_example(command):
    env = dict(os.environ, PYTHONWARNINGS="error")
    env.pop("PYTHONOPTIMIZE", None)  # the examples check their results with assert
    # The examples must run the cowstore this test imported.
    here = os.path.dirname(os.path.dirname(cowstore.__file__))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, *command.split()], cwd=ROOT, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=TIMEOUT)
    assert proc.returncode == 0, (f"{command} exited with {proc.returncode}\n"
                                  f"stdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc.stdout


def assert_prints(stdout, patterns):
    for pattern in patterns:
        assert re.search(pattern, stdout, re.M), f"no line matches {pattern!r} in:\n{stdout}"


def test_every_example_is_run():
    run = {command.split()[0] for command in EXPECTED}
    assert run == set(EXAMPLES), "add the example's expected lines to EXPECTED"


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_example_runs_and_checks_itself(command):
    assert_prints(run_example(command), EXPECTED[command])


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="torch is not installed: only the multiprocessing fallback ran")
def test_torch_dataset_with_torch_dataloader():
    command, patterns = WITH_TORCH
    stdout = run_example(command)
    assert_prints(stdout, patterns)
    # fork is replaced by forkserver on Python 3.12+ (see the example)
    assert re.search(r"^(fork|forkserver): 2 workers, \d+ batches", stdout, re.M), stdout


def quoted_examples():
    """{path: code} for each ```python block of recipes.md opening with `# examples/...`."""
    with open(RECIPES, encoding="utf-8") as f:
        blocks = re.findall(r"^```python\n(.*?)^```$", f.read(), re.M | re.S)
    quoted = {}
    for block in blocks:
        match = re.match(r"# (examples/[\w.]+\.py)\n", block)
        if match:
            assert match[1] not in quoted, f"{match[1]} is quoted twice"
            quoted[match[1]] = block
    return quoted


def test_recipes_quote_every_example_verbatim():
    quoted = quoted_examples()
    assert set(quoted) == set(EXAMPLES), "docs/recipes.md and examples/ list different files"
    for path in EXAMPLES:
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            assert quoted[path] == f.read(), f"docs/recipes.md quotes an old {path}: copy it again"
