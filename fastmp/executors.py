"""Where the batches of sweeps and figures run: in this process, in local worker
processes, or on a Dask cluster.

Every executor offers ``imap_unordered(items)``: ``items`` is a list of
``(key, fn, arg)`` with ``fn`` a module-level function (so that it pickles by name) and
``arg`` a small picklable value; it yields ``(key, fn(arg))`` as batches finish, in any
order. A batch's result depends only on ``arg``, never on where it ran, so the three
executors give the same numbers.

A worker lost mid-run (killed, out of memory, its machine gone) costs only the batch it
was running: :class:`ProcessExecutor` starts a replacement process and resubmits that
batch; on Dask the scheduler does the same (``distributed.scheduler.allowed-failures``).
An exception raised *by* a batch is not retried (it would fail again): it propagates.
"""
from __future__ import annotations

import collections
import multiprocessing
import os
import pickle
import signal
from multiprocessing.connection import wait

#: default seconds to wait for a Dask scheduler to answer
CONNECT_TIMEOUT = 10.0
#: a batch whose worker dies this many times is not resubmitted again
MAX_LOSSES_PER_BATCH = 3


class ExecutorError(RuntimeError):
    """Execution failed for a reason outside the batch's own code (workers that keep
    dying, an unreachable scheduler)."""


class SerialExecutor:
    """Run every batch in this process, in the order given."""

    kind = "serial"
    workers = 1

    def __init__(self):
        self.lost = 0

    def imap_unordered(self, items):
        for key, fn, arg in items:
            yield key, fn(arg)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------- processes
def _picklable(exc):
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _worker_main(conn):
    """Loop of a worker process: receive ``(key, fn, arg)``, send ``(key, ok, value)``.
    Ctrl-C is the parent's business (it terminates the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        key, fn, arg = msg
        try:
            out = (key, True, fn(arg))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            out = (key, False, _picklable(exc))
        try:
            conn.send(out)
        except (OSError, ValueError):
            return


class _Worker:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.task = None  # (key, fn, arg) being run

    def stop(self, wait_s=2.0):
        try:
            if self.task is None and self.proc.is_alive():
                self.conn.send(None)
                self.proc.join(wait_s)
        except (OSError, ValueError):
            pass
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(wait_s)
        if self.proc.is_alive():  # pragma: no cover - terminate ignored
            self.proc.kill()
            self.proc.join(wait_s)
        self.conn.close()


class ProcessExecutor:
    """``workers`` local processes (``spawn`` start method: the parent may hold BLAS or
    Numba threads that ``fork`` would copy mid-state).

    Each process runs one batch at a time. When a process dies its batch -- and only
    its batch -- is put back at the head of the queue and a new process is started;
    ``lost`` counts such losses. A script that uses more than one worker must run under
    ``if __name__ == "__main__":`` (spawned processes re-import the main module).
    """

    kind = "processes"

    def __init__(self, workers):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = int(workers)
        self.lost = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._pool = []

    def _lost(self, worker, losses):
        key, fn, arg = worker.task
        worker.task = None
        self.lost += 1
        losses[key] += 1
        code = worker.proc.exitcode
        worker.stop(0.5)
        if losses[key] >= MAX_LOSSES_PER_BATCH:
            raise ExecutorError(
                f"batch {key} lost its worker process {losses[key]} times (last exit code "
                f"{code}); a script using workers > 1 must call fastmp under "
                "`if __name__ == '__main__':` (spawned workers re-import the main module)")
        return key, fn, arg

    def imap_unordered(self, items):
        queue = collections.deque(items)
        if not queue:
            return
        losses = collections.Counter()
        pool = self._pool = [_Worker(self._ctx) for _ in range(min(self.workers, len(queue)))]
        try:
            while True:
                for i, w in enumerate(pool):
                    while w.task is None and queue:
                        w.task = queue.popleft()
                        try:
                            w.conn.send(w.task)
                        except (OSError, ValueError):  # died before taking it
                            queue.appendleft(self._lost(w, losses))
                            w = pool[i] = _Worker(self._ctx)
                busy = [w for w in pool if w.task is not None]
                if not busy:
                    return
                wait([w.conn for w in busy] + [w.proc.sentinel for w in busy])
                for i, w in enumerate(pool):
                    if w.task is None:
                        continue
                    msg = None
                    try:
                        if w.conn.poll():
                            msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg is not None:
                        key, ok, value = msg
                        w.task = None
                        if not ok:
                            raise value
                        yield key, value
                    elif not w.proc.is_alive():
                        queue.appendleft(self._lost(w, losses))
                        pool[i] = _Worker(self._ctx)
        finally:
            self.close()

    def close(self):
        pool, self._pool = self._pool, []
        for w in pool:
            w.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------- dask
def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError("the Dask backend needs dask.distributed: "
                          "pip install 'fastmp[dask]'") from None
    return distributed


def connect(address, timeout=CONNECT_TIMEOUT):
    """A ``distributed.Client`` connected to the scheduler at ``address``; a scheduler
    that does not answer within ``timeout`` seconds is one clear error."""
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"scheduler address must be a string like 'tcp://host:8786', "
                         f"got {address!r}")
    distributed = _import_distributed()
    try:
        return distributed.Client(address.strip(), timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExecutorError(f"cannot reach the Dask scheduler at {address.strip()} within "
                            f"{timeout:g} s ({first})") from None


class DaskExecutor:
    """Submit every batch to a ``distributed.Client``. Worker losses are the scheduler's
    to handle: it reruns the lost worker's tasks elsewhere."""

    kind = "dask"

    def __init__(self, client, own=False):
        distributed = _import_distributed()
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        self.client = client
        self.own = own
        self.lost = 0  # not observable here: the scheduler resubmits
        try:
            self.workers = len(client.scheduler_info().get("workers", {})) or 1
        except Exception:  # noqa: BLE001 - informational only
            self.workers = 1

    def imap_unordered(self, items):
        distributed = _import_distributed()
        items = list(items)
        if not items:
            return
        futures = {}
        for key, fn, arg in items:
            fut = self.client.submit(fn, arg, pure=False)
            futures[fut] = key
        try:
            # as_completed looks for "the current client": ours, not a global default
            with self.client.as_current():
                done = distributed.as_completed(list(futures))
            while True:
                with self.client.as_current():
                    fut = next(done, None)
                if fut is None:
                    break
                key = futures.pop(fut)
                try:
                    value = fut.result()
                except distributed.client.FutureCancelledError:
                    raise ExecutorError(f"batch {key} was cancelled on the Dask cluster") from None
                except distributed.scheduler.KilledWorker as exc:
                    raise ExecutorError(f"batch {key} killed {exc.args[-1] if exc.args else 'its'} "
                                        "workers repeatedly on the Dask cluster") from None
                fut.release()
                yield key, value
        finally:
            if futures:
                self.client.cancel(list(futures))

    def close(self):
        if self.own:
            self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_executor(workers=1, client=None, scheduler=None, timeout=CONNECT_TIMEOUT):
    """The executor for ``workers`` local processes, or for a Dask ``client`` / scheduler
    address (at most one of ``client`` and ``scheduler``)."""
    if client is not None and scheduler is not None:
        raise ValueError("give either client= or scheduler=, not both")
    if client is not None:
        return DaskExecutor(client)
    if scheduler is not None:
        return DaskExecutor(connect(scheduler, timeout), own=True)
    if workers == 1:
        return SerialExecutor()
    return ProcessExecutor(workers)


def cpu_count():
    """CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
