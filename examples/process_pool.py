# examples/process_pool.py
"""Worker processes reading one shared, read-only dataset instead of each getting a copy.

Two ways to hand the data over, each run with the fork and spawn start methods:

1. cowstore.share(data) + multiprocessing.Pool: the shared value goes to the
   workers as task arguments, pickled as a reference to an anonymous store.
2. A store file + concurrent.futures.ProcessPoolExecutor: each worker opens
   the file once, in its initializer.

Both read the same pages of the page cache.  Every result is checked against
a serial computation on the plain data.
"""
import argparse
import collections
import multiprocessing
import os
import pickle
import random
import tempfile
from concurrent.futures import ProcessPoolExecutor

import cowstore

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
N_WORKERS = 2
dataset = None  # in ProcessPoolExecutor workers: the rows, opened by open_dataset()


def make_corpus(n_docs, seed=0):
    rng = random.Random(seed)
    return [{"id": i, "tags": rng.sample(["news", "sport", "tech", "arts"], 2),
             "text": " ".join(rng.choices(WORDS, k=rng.randrange(5, 40)))}
            for i in range(n_docs)]


def count_words(rows, lo, hi):
    """Word counts per tag over rows[lo:hi] (indexing reads only those rows)."""
    counts = collections.Counter()
    for i in range(lo, hi):
        row = rows[i]
        words = collections.Counter(row["text"].split())
        for tag in row["tags"]:
            for word, n in words.items():
                counts[tag, word] += n
    return counts


def open_dataset(path):
    global dataset
    dataset = cowstore.open(path, readonly=True)["docs"]  # lazy: nothing is read yet


def count_words_in_dataset(bounds):
    return count_words(dataset, *bounds)


def chunks(n, parts):
    step = -(-n // parts)
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def with_pool(rows, method):
    with multiprocessing.get_context(method).Pool(N_WORKERS) as pool:
        results = pool.starmap(count_words, [(rows, lo, hi) for lo, hi in chunks(len(rows), 8)])
    return sum(results, collections.Counter())


def with_executor(path, n_docs, method):
    with ProcessPoolExecutor(N_WORKERS, mp_context=multiprocessing.get_context(method),
                             initializer=open_dataset, initargs=(path,)) as executor:
        results = executor.map(count_words_in_dataset, chunks(n_docs, 8))
        return sum(results, collections.Counter())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    args = parser.parse_args()

    corpus = make_corpus(args.docs)
    expected = count_words(corpus, 0, len(corpus))  # serial, on plain dicts
    shared = cowstore.share(corpus)
    print(f"{args.docs} documents: pickled as plain data {len(pickle.dumps(corpus)):,} bytes,"
          f" shared {len(pickle.dumps(shared)):,} bytes (a reference)")
    assert len(pickle.dumps(shared)) < 1024

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "corpus.cow")
        with cowstore.open(path) as store:
            store["docs"] = corpus
        for method in ("fork", "spawn"):
            assert with_pool(shared, method) == expected, f"Pool ({method}) disagrees"
            print(f"multiprocessing.Pool, {method}: {N_WORKERS} workers, counts match serial")
            assert with_executor(path, args.docs, method) == expected, \
                f"ProcessPoolExecutor ({method}) disagrees"
            print(f"ProcessPoolExecutor, {method}: {N_WORKERS} workers, counts match serial")


if __name__ == "__main__":
    main()
