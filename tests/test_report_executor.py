"""`make report EXECUTOR=dask`: the sweep on a real two-worker Dask cluster on this machine gives the local run's
rows, outlives a worker that dies mid-sweep, and refuses a scheduler it cannot reach in one line."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from boards import BoardsError

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).parent.parent
SWEEP = dict(pes=[1, 2], simds=[8], jobs=2)


def _timeless(rows):
    """Rows without the one column that is a measurement of this run (seconds of synthesis)."""
    return [{k: v for k, v in r.items() if k != "synth_seconds"} for r in rows]


def _files(out):
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    meta = json.loads((out / "sweep.json").read_text())
    return _timeless(rows), _timeless(meta["rows"])


@pytest.fixture(scope="module")
def local_sweep(tiny_export, tmp_path_factory):
    from boards.report import sweep

    out = tmp_path_factory.mktemp("report-local") / "report"
    rows = sweep(tiny_export, out, progress=False, **SWEEP)
    return rows, out


@pytest.fixture(scope="module")
def two_workers():
    """A real cluster: a scheduler in this process, two one-thread worker processes (each under a nanny)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.mark.slow  # ~45 s; the retry test below also checks rows equal to the local run on a real cluster
def test_local_cluster_matches_local_run(tiny_export, local_sweep, tmp_path, capsys):
    from boards.report import sweep

    rows, local_out = local_sweep
    assert [(r["pe"], r["simd"]) for r in rows] == [(1, 8), (2, 8)]
    # no --scheduler: the sweep starts its own LocalCluster of --jobs (2) worker processes
    dask_rows = sweep(tiny_export, tmp_path / "report", executor="dask", **SWEEP)
    assert _timeless(dask_rows) == _timeless(rows)
    assert _files(tmp_path / "report") == _files(local_out)  # same points, numbers and order in csv and json
    err = capsys.readouterr().err
    assert "local Dask cluster (2 workers)" in err
    assert "report: 4/4 " in err and " elapsed" in err  # 2 foldings + 2 multiplier PEs, one line each


def test_worker_that_dies_is_retried(tiny_export, local_sweep, two_workers, tmp_path, capsys):
    from boards.report import sweep, synth_task

    marker = tmp_path / "killed-once"

    def dies_first_time(task):  # a closure: cloudpickle ships it by value to the workers
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return synth_task(task)
        os._exit(1)  # the worker process dies with this point in flight

    workers = set(two_workers.scheduler_info["workers"])
    # PE 1 only (one folding, two multiplier PEs): the first point to start kills its worker
    dask_rows = sweep(
        tiny_export,
        tmp_path / "report",
        executor="dask",
        scheduler=two_workers.scheduler_address,
        point_fn=dies_first_time,
        **dict(SWEEP, pes=[1]),
    )
    assert marker.exists()
    assert set(two_workers.scheduler_info["workers"]) != workers  # a worker was lost (its nanny started another)
    assert _timeless(dask_rows) == _timeless(local_sweep[0][:1])
    rows, meta_rows = _files(tmp_path / "report")
    local_rows, local_meta_rows = _files(local_sweep[1])
    assert rows == local_rows[:1] and meta_rows == local_meta_rows[:1]
    err = capsys.readouterr().err
    assert f"on the Dask scheduler {two_workers.scheduler_address}" in err and "report: 3/3 " in err


def test_unreachable_scheduler_and_missing_dask(tiny_export, tmp_path, monkeypatch):
    import socket

    from boards.report import sweep

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(BoardsError, match=f"cannot reach the Dask scheduler at {address}"):
        sweep(tiny_export, tmp_path / "a", executor="dask", scheduler=address, connect_timeout=1, **SWEEP)
    assert not (tmp_path / "a").exists() and not (tmp_path / ".a.work").exists()  # failed before any work
    env = dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="1s")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "boards",
            "report",
            "--export",
            str(tiny_export),
            "--pe",
            "1",
            "--simd",
            "8",
            "--executor",
            "dask",
            "--scheduler",
            address,
            "-o",
            str(tmp_path / "b"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.count("\n") == 1 and address in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "boards",
            "report",
            "--export",
            str(tiny_export),
            "--executor",
            "ray",
            "-o",
            str(tmp_path / "c"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "invalid choice: 'ray'" in r.stderr
    with pytest.raises(BoardsError, match="needs --executor dask"):
        sweep(tiny_export, tmp_path / "d", scheduler=address, **SWEEP)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if Dask were not installed
    with pytest.raises(BoardsError, match=r'pip install "dask\[distributed\]"'):
        sweep(tiny_export, tmp_path / "e", executor="dask", **SWEEP)
