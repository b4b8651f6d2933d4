"""Every ```python block of README.md and docs/*.md runs as written.

Each block runs alone, as a reader would paste it into a file: a fresh
interpreter in an empty directory (the examples create their store files
there), with warnings as errors.  Two kinds of block are not run here:

- a block opening with ``# examples/<name>.py`` quotes that file, which
  test_examples.py runs and compares with the quote;
- a block right after a ``<!-- not run: reason -->`` line, for the few that
  cannot run alone (the reason says why).  Use it sparingly.
"""
import glob
import os
import re
import subprocess
import sys

import pytest

import cowstore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGES = ["README.md", *sorted(os.path.relpath(p, ROOT)
                              for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))]
TIMEOUT = 180  # seconds per block; the worker-pool guides take several
BLOCK = re.compile(r"^(?:<!-- not run: (?P<reason>.+?) -->\n)?```python\n(?P<code>.*?)^```$",
                   re.M | re.S)
QUOTE = re.compile(r"# (examples/[\w.]+\.py)\n")


def blocks():
    """(page:line, code, reason not to run or None) for each python block."""
    found = []
    for page in PAGES:
        with open(os.path.join(ROOT, page), encoding="utf-8") as f:
            text = f.read()
        for m in BLOCK.finditer(text):
            line = text.count("\n", 0, m.start("code"))
            reason = m["reason"]
            quote = QUOTE.match(m["code"])
            if reason is None and quote and os.path.exists(os.path.join(ROOT, quote[1])):
                reason = f"quotes {quote[1]}, run by test_examples.py"
            found.append((f"{page}:{line}", m["code"], reason))
    return found


BLOCKS = blocks()


def test_blocks_found():
    assert len(BLOCKS) >= 20 and any(page.startswith("README") for page, _, _ in BLOCKS)


@pytest.mark.parametrize("code,reason", [(c, r) for _, c, r in BLOCKS],
                         ids=[page for page, _, _ in BLOCKS])
def test_block_runs(code, reason, tmp_path):
    if reason:
        pytest.skip(reason)
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, PYTHONWARNINGS="error")
    env.pop("PYTHONOPTIMIZE", None)          # the blocks check themselves with assert
    here = os.path.dirname(os.path.dirname(cowstore.__file__))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=TIMEOUT)
    assert proc.returncode == 0, (f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\n"
                                  f"stderr:\n{proc.stderr[-4000:]}")
