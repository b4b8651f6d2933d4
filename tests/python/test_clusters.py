"""Values through real engines: a Dask LocalCluster with worker processes
and a local Ray, each with its default serialization (pickle protocol 5,
buffers out of band).  Installed by `make` (extras dask, ray); skipped with
the reason when a package is missing.  Kept short: one cluster per engine,
module-scoped, a few tasks."""
import os
import sys

import pytest

import cowstore
from cowstore import freeze, thaw

# Both engines warn about their own environment (ports, tokens, deprecations);
# the suite's `filterwarnings = error` is for cowstore's warnings.
pytestmark = pytest.mark.filterwarnings("ignore")

ROWS = 20_000


def _rows():
    return [{"id": i, "name": f"row-{i}", "tags": ["a"] * (i % 3)} for i in range(ROWS)]


def _sum_ids(part):
    return type(part).__name__, sum(r["id"] for r in part)


def _in_worker(value):
    """What a worker sees: the type, a read, and how many parcels it has open."""
    from cowstore import _cowstore
    return type(value).__name__, len(value), value[ROWS - 1]["id"], _cowstore._open_parcels()


# ---- Dask --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip(
        "dask.distributed", reason="dask[distributed] is not installed (pip install '.[dask]')")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            yield client


def test_dask_sizeof_sees_the_nodes():
    sizeof = pytest.importorskip("dask.sizeof", reason="dask is not installed").sizeof
    value = freeze(_rows())
    assert sizeof(value) >= cowstore._cowstore._measure([value])[0] > 20 * ROWS


def test_dask_scatter_and_map_stored_partitions(dask_client, tmp_path):
    store = cowstore.open(str(tmp_path / "data.cow"))
    store["rows"] = _rows()
    rows = store["rows"]
    step = ROWS // 4
    parts = dask_client.scatter([rows[i:i + step] for i in range(0, ROWS, step)])
    got = dask_client.gather(dask_client.map(_sum_ids, parts))
    assert [t for t, _ in got] == ["CowList"] * 4
    assert sum(s for _, s in got) == sum(range(ROWS))
    [whole] = dask_client.scatter([rows], broadcast=True)
    kind, n, last, open_parcels = dask_client.submit(_in_worker, whole).result()
    assert (kind, n, last) == ("CowList", ROWS, ROWS - 1) and open_parcels >= 1


def test_dask_results_come_back_as_containers(dask_client):
    fut = dask_client.submit(lambda n: freeze({"x": list(range(n))}), 1000)
    back = fut.result()
    assert type(back) is cowstore.CowDict and thaw(back) == {"x": list(range(1000))}


def test_dask_bag_over_a_stored_dataset(dask_client, tmp_path):
    bag = pytest.importorskip("dask.bag")
    store = cowstore.open(str(tmp_path / "bag.cow"))
    store["rows"] = _rows()
    rows = store["rows"]
    b = bag.from_sequence([rows[i:i + 5000] for i in range(0, ROWS, 5000)], npartitions=4)
    total = b.map(lambda part: sum(len(r["tags"]) for r in part)).sum().compute()
    assert total == sum(i % 3 for i in range(ROWS))


# ---- Ray ------------------------------------------------------------------------------

def _kill_all(procs):
    """Kill and reap: Ray's Popen handles of a half-made node are waited on
    too, or each warns at collection that its process is still running."""
    import gc
    import subprocess
    import psutil
    procs = list(procs)
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    pids = {p.pid for p in procs}
    for obj in gc.get_objects():
        if isinstance(obj, subprocess.Popen) and obj.pid in pids and obj.returncode is None:
            obj.wait(timeout=10)
    psutil.wait_procs(procs, timeout=10)


def _start_ray(ray, attempts=2):
    """ray.init, tried again once: on a loaded machine the raylet can miss
    Ray's fixed 30 s registration wait.  A failed start leaves its daemons
    running (Ray drops the half-made node), so they are killed here."""
    import psutil
    me = psutil.Process()
    for attempt in range(attempts):
        before = {p.pid for p in me.children(recursive=True)}
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            return
        except Exception:
            ray.shutdown()
            _kill_all(p for p in me.children(recursive=True) if p.pid not in before)
            if attempt + 1 == attempts:
                raise


@pytest.fixture(scope="module")
def ray_module():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install '.[ray]')")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray's workers cannot import this test module: send its functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    if os.environ.get("COWSTORE_SANITIZED_RUN"):
        pytest.skip("make test-sanitize preloads libasan, which Ray's own daemons (GCS, "
                    "raylet) inherit; they may not start within Ray's fixed 30 s. "
                    "make test runs these tests")
    _start_ray(ray)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_put_and_tasks_read_the_pack(ray_module):
    ray = ray_module
    value = cowstore.FrozenList(freeze(_rows()))
    ref = ray.put(value)
    task = ray.remote(_in_worker)
    got = ray.get([task.remote(ref) for _ in range(4)])
    assert all(g[:3] == ("FrozenList", ROWS, ROWS - 1) and g[3] >= 1 for g in got)
    back = ray.get(ref)
    assert type(back) is cowstore.FrozenList and back == value


def test_ray_store_backed_value_and_actor(ray_module, tmp_path):
    ray = ray_module
    store = cowstore.open(str(tmp_path / "ray.cow"))
    store["rows"] = _rows()
    ref = ray.put(store["rows"])

    @ray.remote
    class Counter:
        def __init__(self, rows):
            self.rows = rows                    # a lazy container over the object store

        def tags(self, lo, hi):
            return sum(len(r["tags"]) for r in self.rows[lo:hi])

    counter = Counter.remote(ref)
    assert ray.get(counter.tags.remote(0, ROWS)) == sum(i % 3 for i in range(ROWS))
