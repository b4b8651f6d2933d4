"""The benchmark suite still runs: bench/run_all.py in quick mode into a temporary
directory produces benchmarks.md with every section (and the plots when
matplotlib is installed).  Competitor packages are optional, so this runs with
the test extras alone."""
import importlib.util
import os
import re
import subprocess
import sys

import cowstore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECTIONS = ["## Machine", "## Goals at a glance", "## 1. Copy cost", "## 2. Lookup: d[k]",
            "## 3. Iteration: for k, v in d.items()", "## 4. Setitem: d[k] = v",
            "## 5. Memory", "## 6. freeze / thaw", "## 7. GC pauses",
            "## 8. Stored dataset: size and open", "## 9. Stored read: a random record",
            "## 10. Workers reading a shared dataset", "## 11. Committing a one-leaf change",
            "## 13. diff per change", "## 14. Bytes per record", "## 16. Real program state",
            "## 17. Stored reads from threads", "## 18. List edits: insert, pop(0), slices, concatenation",
            "## 19. Set algebra: |, &, -, ^, subset tests, discard"]


def test_run_all_quick_writes_every_section(tmp_path):
    env = dict(os.environ, COWSTORE_BENCH_QUICK="1")
    # The benchmarks must measure the cowstore this test imported.
    here = os.path.dirname(os.path.dirname(cowstore.__file__))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run_all.py"),
                           "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = (tmp_path / "benchmarks.md").read_text()
    for title in SECTIONS:
        assert title in text, title
    assert "FAILED" not in text
    assert "Quick mode" in text
    # Every section states its goals with a verdict.
    assert len(re.findall(r"\| \*\*(?:met|not met)\*\* \||\| n/a \|", text)) >= 11
    if importlib.util.find_spec("matplotlib") is not None:
        for name in ("copy", "lookup", "iteration", "setitem", "memory", "freeze_thaw", "gc",
                     "store_size", "store_read", "store_commit", "records"):
            png = f"bench_{name}.png"
            assert (tmp_path / png).stat().st_size > 0, png
            assert f"]({png})" in text, png
