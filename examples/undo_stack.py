# examples/undo_stack.py
"""Undo/redo by snapshots, with copy.deepcopy made O(1) by cowstore.

An editor saves a deep copy of the whole document before every edit.  The
Editor class below is ordinary code written for plain dicts and lists; the
only change for cowstore is to hand it cowstore.freeze(document).  The script
replays one random session of edits, undos and redos on both, checks that
they agree at every step, then times the snapshot and the whole session.
"""
import argparse
import collections
import copy
import random
import statistics
import time

import cowstore


def make_document(n_blocks):
    return {"title": "Quarterly report",
            "meta": {"author": "ann", "labels": ["draft"]},
            "blocks": [{"id": i, "text": f"paragraph {i}",
                        "style": {"bold": False, "size": 12}, "comments": []}
                       for i in range(n_blocks)]}


class Editor:
    """Undo and redo by keeping whole copies of the document."""

    def __init__(self, doc, history=1000):
        self.doc = doc
        self.undo_stack = collections.deque(maxlen=history)  # bounded: each copy costs memory
        self.redo_stack = []

    def edit(self, op):
        self.undo_stack.append(copy.deepcopy(self.doc))  # O(1) when doc is a cowstore container
        self.redo_stack.clear()
        apply_edit(self.doc, op)

    def undo(self):
        if self.undo_stack:
            self.redo_stack.append(self.doc)
            self.doc = self.undo_stack.pop()

    def redo(self):
        if self.redo_stack:
            self.undo_stack.append(self.doc)
            self.doc = self.redo_stack.pop()


def apply_edit(doc, op):
    kind, pos, text = op
    blocks = doc["blocks"]
    i = pos % len(blocks)  # positions are drawn blind, so fold them onto the current length
    if kind == "text":
        blocks[i]["text"] = text
    elif kind == "bold":
        blocks[i]["style"]["bold"] = not blocks[i]["style"]["bold"]
    elif kind == "comment":
        blocks[i]["comments"].append({"by": "bob", "text": text})
    elif kind == "insert":
        blocks.insert(i, {"id": -pos, "text": text, "style": {"bold": False, "size": 12},
                          "comments": []})
    elif kind == "delete" and len(blocks) > 1:
        del blocks[i]
    elif kind == "title":
        doc["title"] = text


def make_session(n_steps, seed=0):
    """A reproducible list of "undo", "redo" and edit operations."""
    rng = random.Random(seed)
    kinds = ["text", "text", "bold", "comment", "insert", "delete", "title"]
    steps = []
    for step in range(n_steps):
        r = rng.random()
        if r < 0.2:
            steps.append("undo")
        elif r < 0.35:
            steps.append("redo")
        else:
            steps.append((rng.choice(kinds), rng.randrange(1 << 30), f"edit {step}"))
    return steps


def run_step(editor, step):
    if step == "undo":
        editor.undo()
    elif step == "redo":
        editor.redo()
    else:
        editor.edit(step)


def check_same_behaviour(n_blocks, session):
    plain = Editor(make_document(n_blocks))
    cow = Editor(cowstore.freeze(make_document(n_blocks)))
    for n, step in enumerate(session):
        run_step(plain, step)
        run_step(cow, step)
        assert cow.doc == plain.doc, f"documents differ after step {n}: {step}"
    assert list(cow.undo_stack) == list(plain.undo_stack)
    assert list(cow.redo_stack) == list(plain.redo_stack)
    return plain


def median_time(fn, setup, repeat):
    """Median seconds of fn(setup()) over `repeat` runs; setup is not timed."""
    times = []
    for _ in range(repeat):
        arg = setup()
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def replay(editor, session):
    for step in session:
        run_step(editor, step)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1000, help="paragraphs in the document")
    parser.add_argument("--steps", type=int, default=60, help="edits, undos and redos")
    parser.add_argument("--repeat", type=int, default=3, help="timing runs (the median is kept)")
    args = parser.parse_args()

    session = make_session(args.steps)
    editor = check_same_behaviour(args.blocks, session)
    counts = collections.Counter(s if isinstance(s, str) else "edit" for s in session)
    print(f"session of {args.steps} steps ({counts['edit']} edits, {counts['undo']} undos,"
          f" {counts['redo']} redos) on {args.blocks} blocks:"
          f" cowstore and plain documents equal after every step")
    print(f"final title {editor.doc['title']!r}, {len(editor.doc['blocks'])} blocks,"
          f" {len(editor.undo_stack)} snapshots to undo, {len(editor.redo_stack)} to redo")

    plain_doc = make_document(args.blocks)
    cow_doc = cowstore.freeze(plain_doc)
    t_plain = median_time(copy.deepcopy, lambda: plain_doc, args.repeat)
    t_cow = median_time(copy.deepcopy, lambda: cow_doc, args.repeat)
    print(f"one snapshot:  copy.deepcopy of plain dicts {t_plain * 1e3:.2f} ms,"
          f" of cowstore {t_cow * 1e6:.1f} µs, ratio {t_plain / t_cow:,.0f}x")

    t_plain = median_time(lambda ed: replay(ed, session),
                          lambda: Editor(make_document(args.blocks)), args.repeat)
    t_cow = median_time(lambda ed: replay(ed, session),
                        lambda: Editor(cowstore.freeze(make_document(args.blocks))), args.repeat)
    print(f"whole session: plain dicts {t_plain * 1e3:.1f} ms, cowstore {t_cow * 1e3:.1f} ms,"
          f" ratio {t_plain / t_cow:,.0f}x")


if __name__ == "__main__":
    main()
