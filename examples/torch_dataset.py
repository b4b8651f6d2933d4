# examples/torch_dataset.py
"""A map-style dataset over a store, loaded in batches by two worker processes.

With PyTorch installed, the dataset goes to torch.utils.data.DataLoader
(num_workers=2); without it, or with --no-torch, to a few lines of
multiprocessing that do what DataLoader's workers do.  Either way each worker
receives the dataset as a reference to the store file, reads the rows it is
asked for straight from the shared pages, and stacks them into a batch.  Run
with the fork and spawn start methods; the batches are checked against the
source rows.
"""
import argparse
import importlib.util
import multiprocessing
import os
import pickle
import sys
import tempfile

import numpy as np

import cowstore

BATCH_SIZE = 256
N_WORKERS = 2
worker_dataset = None  # in fallback workers: the dataset, received once per worker


class StoreDataset:
    """The torch.utils.data.Dataset protocol, __len__ and __getitem__, over rows in a store."""

    def __init__(self, path, name):
        self.rows = cowstore.open(path, readonly=True)[name]  # lazy; pickles as a reference

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        return row["features"], row["label"]  # features: a read-only view of the store's pages


def collate(samples):
    """One batch as numpy arrays: np.stack makes the batch's one (writable) copy."""
    features, labels = zip(*samples)
    return np.stack(features), np.array(labels)


def collate_tensors(samples):
    import torch  # here, not at the top, so that --no-torch runs never load torch
    features, labels = collate(samples)
    return torch.from_numpy(features), torch.from_numpy(labels)


def torch_batches(dataset, method):
    from torch.utils.data import DataLoader
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, num_workers=N_WORKERS,
                        multiprocessing_context=method, collate_fn=collate_tensors)
    for features, labels in loader:
        yield features.numpy(), labels.numpy()


def set_worker_dataset(dataset):
    global worker_dataset
    worker_dataset = dataset


def load_batch(indices):
    return collate([worker_dataset[i] for i in indices])


def fallback_batches(dataset, method):
    """DataLoader(dataset, batch_size, num_workers) in miniature, batches in order."""
    batches = [range(lo, min(lo + BATCH_SIZE, len(dataset)))
               for lo in range(0, len(dataset), BATCH_SIZE)]
    with multiprocessing.get_context(method).Pool(
            N_WORKERS, initializer=set_worker_dataset, initargs=(dataset,)) as pool:
        yield from pool.imap(load_batch, batches)


def make_rows(n, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    return [{"features": rng.random(dim, dtype=np.float32), "label": i % 10} for i in range(n)]


def check_epoch(batches, rows):
    features, labels = zip(*batches)
    assert np.array_equal(np.concatenate(features), np.stack([r["features"] for r in rows]))
    assert np.array_equal(np.concatenate(labels), [r["label"] for r in rows])
    return len(features)


def choose_loader(no_torch):
    if no_torch:
        return fallback_batches, "multiprocessing fallback (--no-torch)", ("fork", "spawn")
    if importlib.util.find_spec("torch") is None:
        return fallback_batches, "multiprocessing fallback (torch not installed)", ("fork", "spawn")
    import torch
    # Importing torch starts a thread, and Python 3.12+ warns about fork() in a
    # multi-threaded process (the child may deadlock): use forkserver there.
    fork = "fork" if sys.version_info < (3, 12) else "forkserver"
    return torch_batches, f"torch.utils.data.DataLoader (torch {torch.__version__})", (fork, "spawn")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--no-torch", action="store_true", help="use the fallback loader")
    args = parser.parse_args()

    batches_of, loader_name, methods = choose_loader(args.no_torch)
    print(f"loader: {loader_name}")
    rows = make_rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.cow")
        with cowstore.open(path) as store:  # build once; any number of programs can read it
            store["train"] = rows
        dataset = StoreDataset(path, "train")
        print(f"dataset of {len(dataset)} rows pickles to {len(pickle.dumps(dataset))} bytes")
        for method in methods:
            n_batches = check_epoch(batches_of(dataset, method), rows)
            print(f"{method}: {N_WORKERS} workers, {n_batches} batches of up to {BATCH_SIZE},"
                  f" identical to the source rows")


if __name__ == "__main__":
    main()
