"""Resumable, streaming sweeps: ``sweep(models, generators, ms, trials, ...)`` and the
engine that ``fastmp figure`` shares.

**Grid and batches.** A sweep runs every *point* ``(model, generator, m)`` of the grid
``models x generators x ms``. As in Appendix E.2 each trial may draw its own allocation:
the trials of a point are cut into *blocks* of ``trials_per_alloc`` consecutive trials
sharing one allocation, and block ``j`` draws its allocation and its trials from streams
derived from ``(seed, point, j)`` (:class:`numpy.random.SeedSequence`). A *batch* is
``batch_size / trials_per_alloc`` consecutive blocks of one point. Each batch is
therefore a deterministic slice of the run: its numbers depend only on the seed and the
arguments -- not on the batch size, the number of workers or the executor.

**Streaming and resume.** Every finished batch is appended as one JSON line to
``OUT/NAME.batches.jsonl`` (a tidy table: ``pandas.read_json(path, lines=True)``) and
fsync'd before the next is recorded, so a batch is either fully on disk or not at all.
The arguments are stored first in ``OUT/NAME.manifest.json``. A rerun with the same
arguments reads the log, skips the batches it holds, drops a torn last line (a batch
being written when the process died: it is redone) and computes the rest; a rerun with
different arguments stops with an error naming the differences (``restart=True``
discards the old run). At the end ``OUT/NAME.csv`` gets one row per point (written to a
temporary file and renamed into place). Ctrl-C or ``kill -9`` lose only the batches that
were running. A lock file keeps two runs from writing into the same log.

**Execution** (:mod:`fastmp.executors`): in this process (``workers=1``), in local
worker processes (``workers > 1``) or on a Dask cluster (``client=`` or
``scheduler="tcp://..."``); a lost worker costs only its batch, which is resubmitted.

Generators (``NAME`` or ``NAME:key=value,...``; :func:`parse_generator`):

============  =======================================================================
``rows``      ``param=P, k=K[, r=R][, axis=rows|columns]``: ``r`` (default ``d m``)
              weights of ``P`` over exactly the first ``k`` rows (columns); for LRNN
              ``W`` at most ``Tb`` per row and ``Td`` per column (App. E.2)
``thm31``     decoder with ``m`` weights per row (Theorem 3.1; ``m=auto``: full rows)
``thm35``     ``[by=rows|columns]``: LRNN ``W`` meeting Theorem 3.5 (``m=auto``: ``Tb``)
``budget``    ``param=P[, maximal=1]``: ``d m`` weights within Theorem 3.2/4.1's budgets
``full``      ``param=P``: every weight of ``P`` (``m=auto``: ``r/d``)
============  =======================================================================

``m="auto"`` lets the generator choose and then uses ``m = r/d``.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import tempfile
import time

import numpy as np

#: format of the manifest and of the batch records
FORMAT = 1
GENERATOR_PARAMS = {
    "rows": {"param": str, "k": int, "r": int, "axis": ("rows", "columns")},
    "thm31": {},
    "thm35": {"by": ("rows", "columns")},
    "budget": {"param": str, "maximal": bool},
    "full": {"param": str},
}
_REQUIRED = {"rows": ("param", "k"), "budget": ("param",), "full": ("param",)}
METHODS = ("auto", "linear", "newton", "theorem35", "relu-exact")
#: one row per point in the final CSV, these columns first
COLUMNS = ("model", "generator", "m", "r", "mp", "ci_low", "ci_high", "trials", "matches",
           "undecided", "method")


class SweepError(ValueError):
    """A user-facing problem with a sweep's output or arguments (one line)."""


# ============================================================================ storage
def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (tuple, np.ndarray)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _canonical(obj):
    return json.dumps(obj, sort_keys=True, default=_json_default, separators=(",", ":"))


def _io_error(path, exc):
    reason = exc.strerror or str(exc)
    return SweepError(f"cannot write to {path}: {reason}")


def prepare_dir(path, who="sweep"):
    """Create directory ``path`` if missing and check that files can be written in it."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{who}: out must be a path, got {path!r}") from None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise _io_error(path, exc) from None
    if not os.path.isdir(path):
        raise SweepError(f"cannot write to {path}: not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".fastmp-write-test-"):
            pass
    except OSError as exc:
        raise _io_error(path, exc) from None
    return path


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Write a file through ``write(fileobj)`` into a temporary file next to it, fsync
    it and rename it into place: readers see the old file or the complete new one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".fastmp-tmp-")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a result file is not secret
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise _io_error(directory, exc) from None
    _fsync_dir(directory)


class BatchLog:
    """Append-only log of finished batches in ``directory``: ``NAME.manifest.json`` (the
    run's arguments and their hash), ``NAME.batches.jsonl`` (one JSON object per line,
    each with a unique ``key``) and a lock file ``.NAME.lock``.

    Use as a context manager; ``records`` maps the keys found on disk (and appended) to
    their records.
    """

    def __init__(self, directory, name, args, restart=False):
        self.dir = directory
        self.name = name
        self.args = args
        self.hash = hashlib.sha256(_canonical(args).encode()).hexdigest()
        self.restart = bool(restart)
        self.manifest_path = os.path.join(directory, f"{name}.manifest.json")
        self.path = os.path.join(directory, f"{name}.batches.jsonl")
        self.lock_path = os.path.join(directory, f".{name}.lock")
        self.records = {}
        self.dropped = 0  # torn or unreadable lines found on opening
        self._fd = self._lock_fd = None

    # ------------------------------------------------------------------ open/close
    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def open(self):
        import fcntl

        try:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _io_error(self.dir, exc) from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise SweepError(f"another fastmp run is writing {self.name} in {self.dir} "
                             f"(lock {self.lock_path} is held)") from None
        try:
            if self.restart:
                for p in (self.path, self.manifest_path):
                    if os.path.exists(p):
                        os.unlink(p)
            self._check_manifest()
            self._load()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            self.close()
            raise _io_error(self.dir, exc) from None
        except BaseException:
            self.close()
            raise

    def close(self):
        for attr in ("_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, attr, None)

    # ------------------------------------------------------------------ manifest
    def _check_manifest(self):
        if os.path.exists(self.manifest_path):
            try:
                with open(self.manifest_path, encoding="utf-8") as fh:
                    old = json.load(fh)
                old_args, old_hash = old["args"], old["hash"]
            except (ValueError, KeyError, TypeError):
                raise SweepError(f"{self.manifest_path} is not a fastmp manifest; use another "
                                 "output directory or restart") from None
            if old_hash != self.hash:
                diff = _differences(old_args, self.args)
                raise SweepError(f"{self.dir} holds a {self.name} run with different arguments "
                                 f"({diff}); use another output directory, the same "
                                 "arguments to resume, or restart (--restart) to discard it")
            return
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            raise SweepError(f"{self.path} has batches but no manifest; use another output "
                             "directory or restart to discard them")
        manifest = {"fastmp": "batch-log", "format": FORMAT, "name": self.name,
                    "hash": self.hash, "args": self.args}
        atomic_write(self.manifest_path,
                     lambda fh: fh.write(json.dumps(manifest, indent=1, sort_keys=True,
                                                    default=_json_default) + "\n"))

    # ------------------------------------------------------------------ records
    def _load(self):
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as fh:
            data = fh.read()
        lines = data.split(b"\n")
        tail = lines.pop()  # bytes after the last newline: a torn write, or b""
        good = []
        for raw in lines:
            try:
                rec = json.loads(raw)
                key = rec["key"]
            except (ValueError, KeyError, TypeError):
                self.dropped += 1
                continue
            if key in self.records:
                continue
            self.records[key] = rec
            good.append(raw)
        if tail:
            self.dropped += 1
        if self.dropped:
            # rewrite without the damaged lines (their batches are redone)
            body = b"".join(g + b"\n" for g in good)
            atomic_write(self.path, lambda fh: fh.write(body.decode("utf-8")))

    def append(self, record):
        """Write one finished batch (``record["key"]`` unique) and fsync it."""
        line = (json.dumps(record, default=_json_default, allow_nan=False) + "\n").encode()
        try:
            view = memoryview(line)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
        except OSError as exc:
            raise _io_error(self.dir, exc) from None
        self.records[record["key"]] = record


def _differences(old, new, limit=4):
    keys = sorted(set(old) | set(new))
    diffs = [f"{k}: {_short(old.get(k, '-'))} before, {_short(new.get(k, '-'))} now"
             for k in keys if _canonical(old.get(k)) != _canonical(new.get(k))]
    more = f", and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more if diffs else "format changed"


def _short(value, width=40):
    text = _canonical(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[:width - 3] + "..."


# ============================================================================ engine
def run_batches(log, tasks, executor, progress=None, on_record=None):
    """Run the ``tasks`` not yet in ``log`` and append each result as it finishes.

    ``tasks`` is a list of ``(key, fn, arg, trials)``; ``fn(arg)`` returns a flat dict
    of JSON values. ``progress`` is a :class:`fastmp.progress.ProgressBar` (or None);
    ``on_record(key, record)`` is called after each batch is safely on disk.
    Returns the number of batches computed.
    """
    keys = [t[0] for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("run_batches: duplicate batch keys")
    todo = [(key, fn, arg) for key, fn, arg, _ in tasks if key not in log.records]
    trials = {key: n for key, _, _, n in tasks}
    if progress is not None:
        progress.resumed(len(tasks) - len(todo),
                         sum(trials[k] for k in keys if k in log.records))
    run = 0
    results = executor.imap_unordered(todo)
    try:
        for key, rec in results:
            if not isinstance(rec, dict):
                raise TypeError(f"batch {key} returned {type(rec).__name__}, not a dict")
            rec = {"key": key, **rec}
            log.append(rec)
            run += 1
            if progress is not None:
                progress.update(1, trials[key])
            if on_record is not None:
                on_record(key, rec)
    finally:
        results.close()
    return run


# ============================================================================ generators
def parse_generator(spec):
    """``(name, {key: value})`` from ``NAME`` or ``NAME:key=value,...`` (or a tuple
    ``(name, dict)``), validated against :data:`GENERATOR_PARAMS`."""
    if isinstance(spec, tuple) and len(spec) == 2:
        name, opts = spec
        opts = dict(opts)
    elif isinstance(spec, str):
        name, _, rest = spec.strip().partition(":")
        opts = {}
        for item in (t.strip() for t in rest.split(",") if t.strip()):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"generator {spec!r}: expected key=value, got {item!r}")
            if key.strip() in opts:
                raise ValueError(f"generator {spec!r}: {key.strip()!r} given twice")
            opts[key.strip()] = value.strip()
    else:
        raise TypeError(f"a generator is a string like 'rows:param=W,k=4', got {spec!r}")
    name = str(name).strip().lower()
    if name not in GENERATOR_PARAMS:
        raise ValueError(f"unknown generator {name!r}; choose one of "
                         + ", ".join(GENERATOR_PARAMS))
    allowed = GENERATOR_PARAMS[name]
    out = {}
    for key, value in opts.items():
        if key not in allowed:
            what = ", ".join(allowed) if allowed else "none"
            raise ValueError(f"generator {name}: unknown option {key!r} (options: {what})")
        kind = allowed[key]
        if kind is int:
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"generator {name}: {key} must be an integer, got {value!r}") from None
            if value < 1:
                raise ValueError(f"generator {name}: {key} must be >= 1, got {value}")
        elif kind is bool:
            text = str(value).lower()
            if text not in ("0", "1", "true", "false", "yes", "no"):
                raise ValueError(f"generator {name}: {key} must be 0 or 1, got {value!r}")
            value = text in ("1", "true", "yes")
        elif isinstance(kind, tuple):
            if value not in kind:
                raise ValueError(f"generator {name}: {key} must be one of {', '.join(kind)}, "
                                 f"got {value!r}")
        else:
            value = str(value)
        out[key] = value
    missing = [k for k in _REQUIRED.get(name, ()) if k not in out]
    if missing:
        raise ValueError(f"generator {name} needs {', '.join(missing)} "
                         f"(e.g. {_EXAMPLES[name]})")
    return name, out


_EXAMPLES = {"rows": "rows:param=W,k=4", "budget": "budget:param=W2", "full": "full:param=D"}


def generator_spec(name, opts):
    """Canonical string of a parsed generator (sorted options)."""
    if not opts:
        return name
    return name + ":" + ",".join(f"{k}={int(v) if isinstance(v, bool) else v}"
                                 for k, v in sorted(opts.items()))


def make_allocation(model, name, opts, m, rng):
    """One allocation of generator ``(name, opts)`` for ``m`` (None = the generator's
    choice) drawn with ``rng``; returns ``(allocation, m_used)``."""
    from . import generators

    if name == "rows":
        r = opts.get("r")
        if r is None:
            if m is None:
                raise ValueError("generator rows with m=auto needs r=R")
            r = model.d * m
        alloc = generators.random_in_rows(model, opts["param"], r, opts["k"], rng,
                                          axis=1 if opts.get("axis") == "columns" else 0)
    elif name == "thm31":
        alloc = generators.theorem31(model, m=m, rng=rng)
    elif name == "thm35":
        alloc = generators.theorem35(model, m=m, by=opts.get("by", "rows"), rng=rng)
    elif name == "budget":
        if m is None:
            raise ValueError("generator budget needs an integer m (it places d m weights)")
        alloc = generators.budget_allocation(model, opts["param"], m, rng,
                                             maximal=opts.get("maximal", False))
    else:  # full
        from .allocation import Allocation
        if opts["param"] not in model.param_shapes:
            raise ValueError(f"unknown parameter {opts['param']!r} for {type(model).__name__}; "
                             f"its parameters are {', '.join(model.param_names)}")
        alloc = Allocation(model, {opts["param"]: np.ones(model.param_shapes[opts["param"]],
                                                          dtype=bool)})
    return alloc, (alloc.default_m() if m is None else m)


# ============================================================================ seeds
def _words(text):
    digest = hashlib.sha256(text.encode()).digest()
    return [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]


def block_seeds(seed, point_id, block):
    """``(rng of the allocation, seed of the trials)`` of block ``block`` of a point."""
    ss = np.random.SeedSequence([int(seed), *_words(point_id), int(block)])
    alloc_ss, trial_ss = ss.spawn(2)
    trial_seed = int(trial_ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return np.random.default_rng(alloc_ss), trial_seed


# ============================================================================ batches
def _sweep_batch(arg):
    """Run one batch of a sweep point (top level: runs in workers)."""
    from .estimators import match_probability

    t0 = time.perf_counter()
    model, gname, gopts = arg["model"], arg["generator"], arg["opts"]
    m_token = arg["m"]
    m_in = None if m_token == "auto" else int(m_token)
    matches = trials = undecided = refined = max_starts = 0
    methods = set()
    r = m_used = None
    for block in range(arg["block0"], arg["block1"]):
        first = block * arg["trials_per_alloc"]
        n = min(arg["trials_per_alloc"], arg["point_trials"] - first)
        rng, trial_seed = block_seeds(arg["seed"], arg["point_id"], block)
        alloc, m_used = make_allocation(model, gname, gopts, m_in, rng)
        r = alloc.r
        res = match_probability(model, alloc, m=m_used, trials=n, seed=trial_seed,
                                method=arg["method"], starts=arg["starts"],
                                adaptive=arg["adaptive"])
        matches += res.matches
        trials += res.trials
        undecided += res.ambiguous
        refined += res.refined
        methods.add(res.method)
        max_starts = max(max_starts, int(res.budget.get("max_starts", 0)))
    return {"point": arg["point"], "batch": arg["batch"], "model": arg["model_spec"],
            "generator": arg["generator_spec"], "m": int(m_used), "r": int(r),
            "first_trial": arg["block0"] * arg["trials_per_alloc"], "trials": trials,
            "matches": matches, "undecided": undecided, "refined": refined,
            "n_alloc": arg["block1"] - arg["block0"], "method": "+".join(sorted(methods)),
            "max_starts": max_starts, "seconds": time.perf_counter() - t0}


def _model_spec(model):
    from .cli import model_spec

    builtin = type(model).__name__ in ("LinearEstimator", "LRNN", "LinearFFN", "ShallowReLU")
    return model_spec(model) if builtin else repr(model)


def _as_model(obj):
    from .models.base import Model

    if isinstance(obj, Model):
        return obj
    if isinstance(obj, str):
        from .cli import parse_model
        return parse_model(obj)
    raise TypeError(f"sweep: a model is a fastmp model or a string like 'lrnn:n=8,T=4,b=1,d=4', "
                    f"got {obj!r}")


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"sweep: {name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"sweep: {name} must be >= {minimum}, got {value}")
    return int(value)


def _as_list(name, value):
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [value]
    out = list(value)
    if not out:
        raise ValueError(f"sweep: {name} is empty")
    return out


def make_progress(progress, total_batches, total_trials, label, stream=None):
    """A :class:`~fastmp.progress.ProgressBar` for ``progress`` = True (always), None
    (when ``stream``, default stderr, is a terminal) or False (never)."""
    import sys

    from .progress import ProgressBar, isatty

    stream = sys.stderr if stream is None else stream
    if progress is None:
        progress = isatty(stream)
    return ProgressBar(total_batches, total_trials, label, stream) if progress else None


def sweep(models, generators, ms=("auto",), trials=1000, seed=0, out=".", *,
          batch_size=100, trials_per_alloc=1, method="auto", starts=64, adaptive=False,
          workers=1, client=None, scheduler=None, connect_timeout=None, progress=None,
          name="sweep", restart=False):
    """Run (or resume) the sweep over ``models x generators x ms`` into directory ``out``.

    Parameters
    ----------
    models : model or str, or a list of them
        fastmp models, or strings of the command line (``"lrnn:n=8,T=4,b=1,d=4"``).
    generators : str or list of str
        Allocation generators, ``"rows:param=W,k=4"`` etc. (module docstring).
    ms : int, "auto" or a list of them
        Numbers of samples ``m``; ``"auto"`` = the generator's default, then ``r/d``.
    trials : int
        Trials per point.
    seed : int
        Every block of every point derives its streams from ``(seed, point, block)``.
    out : path
        Output directory: ``NAME.manifest.json``, ``NAME.batches.jsonl``, ``NAME.csv``.
    batch_size : int
        Trials per batch (the unit of work, of streaming and of resume); a multiple of
        ``trials_per_alloc``. Results do not depend on it.
    trials_per_alloc : int
        Consecutive trials sharing one random allocation (1: one per trial, App. E.2).
    method, starts, adaptive
        Passed to :func:`fastmp.match_probability` (``adaptive=False``: exactly
        ``starts`` Newton starts per unmatched trial, so a batch is self-contained).
    workers : int
        Local worker processes (ignored with ``client``/``scheduler``).
    client : distributed.Client, optional
        Run the batches on this Dask cluster.
    scheduler : str, optional
        Address of a Dask scheduler (``"tcp://host:8786"``) to connect to.
    connect_timeout : float, optional
        Seconds to wait for ``scheduler`` (default 10).
    progress : bool or None
        Progress bar on stderr: True, False, or None = when stderr is a terminal.
    name : str
        Stem of the output files (several sweeps can share a directory).
    restart : bool
        Discard a previous run in ``out`` under ``name`` instead of resuming it.

    Returns
    -------
    pandas.DataFrame
        One row per point (:data:`COLUMNS` first, then ``n_batches``, ``n_alloc``,
        ``refined``, ``max_starts``, ``seconds``); ``attrs`` hold the paths (``csv``,
        ``batches``, ``manifest``) and ``batches_run`` / ``batches_resumed`` (batches
        computed in this call / found finished on disk).
    """
    import pandas as pd

    from .executors import CONNECT_TIMEOUT, make_executor

    models = [_as_model(m) for m in _as_list("models", models)]
    gens = [parse_generator(g) for g in _as_list("generators", generators)]
    ms = _as_list("ms", ms)
    m_tokens = []
    for m in ms:
        if isinstance(m, str) and m.strip().lower() == "auto":
            m_tokens.append("auto")
        else:
            m_tokens.append(_check_int("every m", m, 1))
    trials = _check_int("trials", trials, 1)
    seed = _check_int("seed", seed, 0)
    batch_size = _check_int("batch_size", batch_size, 1)
    trials_per_alloc = _check_int("trials_per_alloc", trials_per_alloc, 1)
    if batch_size % trials_per_alloc:
        raise ValueError(f"sweep: batch_size = {batch_size} must be a multiple of "
                         f"trials_per_alloc = {trials_per_alloc} (a batch holds whole "
                         "allocations)")
    starts = _check_int("starts", starts, 1)
    workers = _check_int("workers", workers, 1)
    if method not in METHODS:
        raise ValueError(f"sweep: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not isinstance(name, str) or not name or os.sep in name or name.startswith("."):
        raise ValueError(f"sweep: name must be a plain file stem, got {name!r}")
    if len({_model_spec(m) for m in models}) != len(models):
        raise ValueError("sweep: a model is given twice")
    if len({generator_spec(*g) for g in gens}) != len(gens):
        raise ValueError("sweep: a generator is given twice")
    if len(set(m_tokens)) != len(m_tokens):
        raise ValueError("sweep: an m is given twice")

    # points, validated by drawing each one's first allocation here (cheap, and every
    # impossible combination is reported before anything is written)
    points = []
    for model in models:
        mspec = _model_spec(model)
        for gname, gopts in gens:
            gspec = generator_spec(gname, gopts)
            for m in m_tokens:
                pid = f"{mspec}|{gspec}|m={m}"
                try:
                    alloc, m_used = make_allocation(model, gname, gopts,
                                                    None if m == "auto" else m,
                                                    block_seeds(seed, pid, 0)[0])
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"sweep: generator {gspec} with m={m} does not apply to "
                                     f"{mspec}: {exc}") from None
                points.append(dict(model=model, model_spec=mspec, generator=gname,
                                   opts=gopts, generator_spec=gspec, m=m, point_id=pid,
                                   m_used=m_used, r=alloc.r))

    blocks_per_batch = batch_size // trials_per_alloc
    n_blocks = -(-trials // trials_per_alloc)
    tasks = []
    for p, pt in enumerate(points):
        for b, block0 in enumerate(range(0, n_blocks, blocks_per_batch)):
            block1 = min(block0 + blocks_per_batch, n_blocks)
            arg = dict(point=p, batch=b, model=pt["model"], model_spec=pt["model_spec"],
                       generator=pt["generator"], opts=pt["opts"],
                       generator_spec=pt["generator_spec"], m=pt["m"],
                       point_id=pt["point_id"], seed=seed, block0=block0, block1=block1,
                       trials_per_alloc=trials_per_alloc, point_trials=trials,
                       method=method, starts=starts, adaptive=bool(adaptive))
            n = min(block1 * trials_per_alloc, trials) - block0 * trials_per_alloc
            tasks.append((f"{p}/{b}", _sweep_batch, arg, n))

    args = {"kind": "sweep", "models": [_model_spec(m) for m in models],
            "generators": [generator_spec(*g) for g in gens], "ms": m_tokens,
            "trials": trials, "seed": seed, "batch_size": batch_size,
            "trials_per_alloc": trials_per_alloc, "method": method, "starts": starts,
            "adaptive": bool(adaptive)}
    path = prepare_dir(out)
    timeout = CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
    # connect first: an unreachable scheduler leaves nothing behind
    with make_executor(workers, client=client, scheduler=scheduler,
                       timeout=timeout) as executor, BatchLog(path, name, args,
                                                              restart=restart) as log:
        bar = make_progress(progress, len(tasks), trials * len(points), f"fastmp {name}")
        try:
            ran = run_batches(log, tasks, executor, bar)
        finally:
            if bar is not None:
                bar.close()
        records = dict(log.records)
        dropped = log.dropped

    rows = []
    for p, pt in enumerate(points):
        recs = sorted((r for r in records.values() if r["point"] == p), key=lambda r: r["batch"])
        rows.append(_aggregate(pt, recs))
    df = pd.DataFrame(rows)
    df = df[list(COLUMNS) + [c for c in df.columns if c not in COLUMNS]]
    csv_path = os.path.join(path, f"{name}.csv")
    atomic_write(csv_path, lambda fh: df.to_csv(fh, index=False))
    df.attrs.update(csv=csv_path, batches=os.path.join(path, f"{name}.batches.jsonl"),
                    manifest=os.path.join(path, f"{name}.manifest.json"),
                    batches_run=ran, batches_resumed=len(tasks) - ran, batches_dropped=dropped)
    return df


def _aggregate(pt, recs):
    from .estimators import wilson_interval

    matches = sum(r["matches"] for r in recs)
    trials = sum(r["trials"] for r in recs)
    lo, hi = wilson_interval(matches, trials)
    methods = sorted({mm for r in recs for mm in r["method"].split("+")})
    return {"model": pt["model_spec"], "generator": pt["generator_spec"], "m": recs[0]["m"],
            "r": recs[0]["r"], "mp": matches / trials, "ci_low": lo, "ci_high": hi,
            "trials": trials, "matches": matches,
            "undecided": sum(r["undecided"] for r in recs), "method": "+".join(methods),
            "m_arg": pt["m"], "n_batches": len(recs),
            "n_alloc": sum(r["n_alloc"] for r in recs),
            "refined": sum(r["refined"] for r in recs),
            "max_starts": max(r["max_starts"] for r in recs),
            "seconds": math.fsum(r["seconds"] for r in recs)}


__all__ = ["sweep", "SweepError", "BatchLog", "run_batches", "parse_generator",
           "make_allocation", "block_seeds", "prepare_dir", "atomic_write"]
