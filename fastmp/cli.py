"""Command line interface: ``fastmp estimate``, ``fastmp classify`` and ``fastmp figure``.

Examples::

    fastmp estimate estimator:q=2,d=2 --mask "W=11,11" --trials 1000
    fastmp estimate lrnn:n=8,T=4,b=1,d=2 --alloc thm31 --m 4 --json
    fastmp estimate ffn:4-16-16-6 --alloc budget --param W2 --m 4 --alloc-seed 3
    fastmp estimate lrnn:n=8,T=4,b=1,d=2 --mask-file alloc.json
    fastmp classify lrnn:n=8,T=4,b=1,d=2 --alloc thm35 --by columns --json
    fastmp figure fig2b --trials 200 --ns 8,12 --out results --workers 2
    fastmp sweep --model lrnn:n=8,T=4,b=1,d=4 --gen rows:param=W,k=4 --gen rows:param=W,k=6 \
        --m 4 --trials 1000 --out sweep1 --workers 2          # rerun the same line to resume

Every error -- a bad argument or a library error -- is reported as one line
``fastmp: error: <message>`` on stderr with exit status 2.

The heavy parts of the package (models, Numba kernels) are imported inside the command
functions, not at module level.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time

from .progress import fmt_eta, isatty

EXIT_OK = 0
EXIT_ERROR = 2

#: model name (lower case) -> canonical name
_MODEL_ALIASES = {
    "estimator": "estimator", "linear": "estimator", "linearestimator": "estimator",
    "lrnn": "lrnn",
    "ffn": "ffn", "linearffn": "ffn",
    "relu": "relu", "shallowrelu": "relu",
}
#: canonical name -> (class name in fastmp, ordered constructor keywords)
_MODELS = {
    "estimator": ("LinearEstimator", ("q", "d")),
    "lrnn": ("LRNN", ("n", "T", "b", "d")),
    "ffn": ("LinearFFN", ("widths",)),
    "relu": ("ShallowReLU", ("q", "n", "d")),
}
_GENERATORS = ("rows", "thm31", "thm35", "budget", "full")
#: trials from which a progress line is shown automatically (when stderr is a TTY)
PROGRESS_MIN_TRIALS = 20000

_MODEL_HELP = """\
MODEL is one string NAME:ARGS (names are case-insensitive):
  estimator:q=4,d=2          linear estimator Y = W X            (alias: linear)
  lrnn:n=8,T=4,b=1,d=2       linear RNN, parameters W, B, D      (needs T*b <= n)
  ffn:4-16-16-6              linear FFN, widths q-n1-...-d       (alias: linearffn; ',' also works)
  relu:q=6,n=8,d=4           shallow ReLU Y = W2 relu(W1 X)      (alias: shallowrelu)
Arguments may also be given by position: lrnn:8,4,1,2."""

_ALLOC_HELP = """\
allocation (exactly one source):
  --mask PARAM=ROWS          e.g. --mask "W=1100,0011" (rows separated by , / or ;);
                             repeat for several parameters
  --mask-file PATH           JSON {"W": ["1100", "0011"]} (Allocation.to_dict format, or the
                             output of `fastmp estimate --json`), .npz (keys = parameter
                             names) or .npy (with --param)
  --alloc GEN                generated: rows (--param, --r, --k, [--axis]), thm31 (decoder,
                             --m = weights per row, default row length), thm35 (LRNN W,
                             [--m], [--by]), budget (--param, --m), full (--param)"""


# ---------------------------------------------------------------------------- errors
class CLIError(Exception):
    """A user error: reported as ``fastmp: error: <message>``, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors raise :class:`CLIError` instead of printing usage and
    exiting, so that every error is a single line."""

    def error(self, message):
        raise CLIError(message)


def _one_line(text):
    return " ".join(str(text).split())


def _message(exc):
    if isinstance(exc, CLIError):
        return str(exc)
    if isinstance(exc, KeyError):
        msg = str(exc.args[0]) if exc.args else "unknown key"
        return f"unknown name {msg}" if not msg.startswith("unknown") else msg
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename}" if exc.filename else str(exc)
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc}"
    msg = str(exc)
    from .executors import ExecutorError
    if isinstance(exc, (ValueError, TypeError, NotImplementedError, OSError, ImportError,
                        ExecutorError)):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


# ---------------------------------------------------------------------------- argument types
def _int_type(minimum):
    def convert(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    convert.__name__ = "integer"
    return convert


_positive = _int_type(1)
_nonnegative = _int_type(0)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


# ---------------------------------------------------------------------------- models
def parse_model(spec):
    """Build a model from ``NAME:ARGS`` (see ``fastmp estimate -h``)."""
    import fastmp

    text = spec.strip()
    name, sep, rest = text.partition(":")
    key = name.strip().lower().replace("_", "").replace("-", "")
    if key not in _MODEL_ALIASES:
        raise CLIError(f"unknown model {name.strip()!r}; choose one of estimator (linear), "
                       "lrnn, ffn (linearffn), relu (shallowrelu)")
    canon = _MODEL_ALIASES[key]
    cls_name, keys = _MODELS[canon]
    cls = getattr(fastmp, cls_name)
    rest = rest.strip()
    if not sep or not rest:
        example = {"estimator": "estimator:q=4,d=2", "lrnn": "lrnn:n=8,T=4,b=1,d=2",
                   "ffn": "ffn:4-16-16-6", "relu": "relu:q=6,n=8,d=4"}[canon]
        raise CLIError(f"model {name.strip()!r} needs its dimensions, e.g. {example!r}")

    if canon == "ffn":
        if "=" in rest:
            k, _, rest = rest.partition("=")
            if k.strip().lower() != "widths":
                raise CLIError(f"ffn: unknown argument {k.strip()!r}; give the widths, "
                               "e.g. 'ffn:4-16-16-6'")
        widths = [_model_int(canon, "widths", w) for w in re.split(r"[-,x\s]+", rest.strip()) if w]
        return cls(widths)

    items = [it.strip() for it in rest.split(",") if it.strip()]
    lower = {k.lower(): k for k in keys}
    values = {}
    if all("=" not in it for it in items):
        if len(items) != len(keys):
            raise CLIError(f"{canon}: expected {len(keys)} values ({', '.join(keys)}), "
                           f"got {len(items)} in {rest!r}")
        for k, it in zip(keys, items):
            values[k] = _model_int(canon, k, it)
    else:
        for it in items:
            k, eq, v = it.partition("=")
            k = k.strip()
            if not eq:
                raise CLIError(f"{canon}: expected KEY=VALUE, got {it!r} "
                               f"(keys: {', '.join(keys)})")
            canon_key = lower.get(k.lower())
            if canon_key is None:
                raise CLIError(f"{canon}: unknown argument {k!r}; its arguments are "
                               f"{', '.join(keys)}")
            if canon_key in values:
                raise CLIError(f"{canon}: argument {canon_key!r} given twice")
            values[canon_key] = _model_int(canon, canon_key, v)
        missing = [k for k in keys if k not in values]
        if missing:
            raise CLIError(f"{canon}: missing argument{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)} (e.g. {canon}:"
                           + ",".join(f"{k}=..." for k in keys) + ")")
    return cls(**values)


def _model_int(canon, key, text):
    try:
        return int(str(text).strip())
    except ValueError:
        raise CLIError(f"{canon}: {key} must be an integer, got {str(text).strip()!r}") from None


def model_spec(model):
    """The ``NAME:ARGS`` string of a model (inverse of :func:`parse_model`)."""
    name = type(model).__name__
    dims = model.dims()
    if name == "LinearFFN":
        return "ffn:" + "-".join(str(w) for w in dims["widths"])
    canon = {"LinearEstimator": "estimator", "LRNN": "lrnn", "ShallowReLU": "relu"}.get(name, name)
    return f"{canon}:" + ",".join(f"{k}={v}" for k, v in dims.items())


# ---------------------------------------------------------------------------- allocations
def _check_param(model, name, what="--param"):
    if name not in model.param_shapes:
        raise CLIError(f"{what}: unknown parameter {name!r} for {type(model).__name__}; "
                       f"its parameters are {', '.join(model.param_names)}")
    return name


def _parse_rows(param, text):
    rows = [r.strip() for r in re.split(r"[,/;]", text)]
    if any(not r for r in rows):
        raise CLIError(f"--mask {param}: empty row in {text!r} "
                       "(rows are 0/1 strings separated by ',', '/' or ';')")
    for r in rows:
        bad = set(r.replace(" ", "")) - {"0", "1"}
        if bad:
            raise CLIError(f"--mask {param}: rows must contain only 0 and 1, got {r!r}")
    return [r.replace(" ", "") for r in rows]


def _masks_from_options(model, items):
    import numpy as np

    masks = {}
    for item in items:
        param, eq, rows = item.partition("=")
        param = param.strip()
        if not eq or not param:
            raise CLIError(f"--mask expects PARAM=ROWS (e.g. \"W=1100,0011\"), got {item!r}")
        _check_param(model, param, "--mask")
        if param in masks:
            raise CLIError(f"--mask: parameter {param!r} given twice")
        rows = _parse_rows(param, rows)
        if len({len(r) for r in rows}) > 1:
            raise CLIError(f"--mask {param}: rows have different lengths "
                           f"({', '.join(str(len(r)) for r in rows)})")
        masks[param] = np.array([[c == "1" for c in r] for r in rows], dtype=bool)
        expected = model.param_shapes[param]
        if masks[param].shape != tuple(expected):
            raise CLIError(f"--mask {param}: mask has shape {masks[param].shape[0]}x"
                           f"{masks[param].shape[1]} (rows x columns) but {param} of "
                           f"{model!r} is {expected[0]}x{expected[1]}")
    return masks


def _bool_array(name, arr, source):
    import numpy as np

    arr = np.asarray(arr)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind in "iuf" and np.all((arr == 0) | (arr == 1)):
        return arr.astype(bool)
    raise CLIError(f"{source}: array {name!r} must be boolean or 0/1, got dtype {arr.dtype}")


def _masks_from_file(model, path, param):
    import numpy as np

    from .allocation import Allocation

    if not os.path.exists(path):
        raise CLIError(f"--mask-file: file not found: {path}")
    if os.path.isdir(path):
        raise CLIError(f"--mask-file: {path} is a directory")
    lower = path.lower()
    if lower.endswith(".npy"):
        if param is None:
            raise CLIError("--mask-file: a .npy file holds one array; name its parameter "
                           "with --param")
        _check_param(model, param)
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise CLIError(f"--mask-file: cannot read {path} as .npy: {_one_line(exc)}") from None
        return Allocation(model, {param: _bool_array(param, arr, "--mask-file")})
    if lower.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (ValueError, OSError) as exc:
            raise CLIError(f"--mask-file: cannot read {path} as .npz: {_one_line(exc)}") from None
        if param is not None:
            raise CLIError("--param does not apply to a .npz mask file (its keys name the "
                           "parameters)")
        for k in arrays:
            _check_param(model, k, "--mask-file")
        return Allocation(model, {k: _bool_array(k, a, "--mask-file") for k, a in arrays.items()})
    # JSON (any other extension)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise CLIError(f"--mask-file: {path} is not valid JSON ({exc}); "
                       "expected {\"W\": [\"1100\", \"0011\"]}, .npy or .npz") from None
    except UnicodeDecodeError:
        raise CLIError(f"--mask-file: {path} is not a JSON text file; "
                       "use .json, .npy or .npz") from None
    if isinstance(data, dict) and isinstance(data.get("allocation"), dict):
        data = data["allocation"]  # output of `fastmp estimate --json`
    if not isinstance(data, dict):
        raise CLIError(f"--mask-file: {path} must hold a JSON object "
                       "{parameter: [row strings]}, got " + type(data).__name__)
    if param is not None:
        raise CLIError("--param does not apply to a JSON mask file (its keys name the "
                       "parameters)")
    for k, rows in data.items():
        _check_param(model, k, "--mask-file")
        if isinstance(rows, str) or not isinstance(rows, list):
            raise CLIError(f"--mask-file: mask of {k!r} must be a list of rows "
                           "(e.g. [\"1100\", \"0011\"])")
    return Allocation.from_dict(model, data)


def _generated(model, args):
    from . import generators
    from .allocation import Allocation
    from .models import LRNN

    gen = args.alloc.lower()
    if gen not in _GENERATORS:
        raise CLIError(f"unknown generator {args.alloc!r} for --alloc; choose one of "
                       + ", ".join(_GENERATORS))
    seed = args.seed if args.alloc_seed is None else args.alloc_seed
    used = {"rows": {"param", "r", "k", "axis"}, "thm31": {"param"}, "thm35": {"param", "by"},
            "budget": {"param"}, "full": {"param"}}[gen]
    for opt in ("r", "k", "axis", "by"):
        if getattr(args, opt) is not None and opt not in used:
            raise CLIError(f"--{opt} does not apply to --alloc {gen}")
    if gen in ("rows", "budget", "full"):
        if args.param is None:
            raise CLIError(f"--alloc {gen} needs --param NAME (one of "
                           f"{', '.join(model.param_names)})")
        _check_param(model, args.param)

    if gen == "rows":
        if args.r is None or args.k is None:
            raise CLIError("--alloc rows needs --r (learnable weights) and --k (rows or "
                           "columns used)")
        axis = 1 if args.axis == "columns" else 0
        return generators.random_in_rows(model, args.param, args.r, args.k, seed, axis=axis)
    if gen == "thm31":
        alloc = generators.theorem31(model, m=args.m, rng=seed)
        if args.param is not None and args.param not in alloc.params:
            raise CLIError(f"--alloc thm31 allocates the decoder {alloc.params[0]} of "
                           f"{type(model).__name__}, not {args.param!r}")
        return alloc
    if gen == "thm35":
        if not isinstance(model, LRNN):
            raise CLIError(f"--alloc thm35 needs an lrnn model (Theorem 3.5 allocates its "
                           f"recurrent weights W), got {type(model).__name__}")
        if args.param not in (None, "W"):
            raise CLIError(f"--alloc thm35 allocates W, not {args.param!r}")
        return generators.theorem35(model, m=args.m, by=args.by or "rows", rng=seed)
    if gen == "budget":
        if args.m is None:
            raise CLIError("--alloc budget needs --m (it places r = d*m weights)")
        return generators.budget_allocation(model, args.param, args.m, seed)
    # full
    import numpy as np
    return Allocation(model, {args.param: np.ones(model.param_shapes[args.param], dtype=bool)})


def build_allocation(model, args):
    """The allocation named by the command's options (exactly one source)."""
    from .allocation import Allocation

    sources = [s for s, v in (("--mask", args.mask), ("--mask-file", args.mask_file),
                              ("--alloc", args.alloc)) if v]
    if not sources:
        raise CLIError("no allocation given: use --mask PARAM=ROWS, --mask-file PATH or "
                       "--alloc GEN")
    if len(sources) > 1:
        raise CLIError(f"give exactly one allocation source, got {' and '.join(sources)}")
    if args.alloc is None:
        stray = [f"--{o.replace('_', '-')}" for o in ("r", "k", "axis", "by", "alloc_seed")
                 if getattr(args, o) is not None]
        if stray:
            raise CLIError(f"{', '.join(stray)} only appl{'y' if len(stray) > 1 else 'ies'} "
                           "to --alloc")
    if args.mask:
        if args.param is not None:
            raise CLIError("--param does not apply to --mask (write PARAM=ROWS)")
        return Allocation(model, _masks_from_options(model, args.mask))
    if args.mask_file:
        return _masks_from_file(model, args.mask_file, args.param)
    return _generated(model, args)


# ---------------------------------------------------------------------------- output
def _table(rows):
    width = max(len(k) for k, _ in rows)
    lines = []
    for key, value in rows:
        text = str(value).split("\n")
        lines.append(f"{key:<{width}}  {text[0]}".rstrip())
        lines.extend(f"{'':<{width}}  {t}".rstrip() for t in text[1:])
    return "\n".join(lines)


def _mask_rows(alloc):
    """Table rows describing the masks: the 0/1 rows of small masks, row counts of big ones."""
    out = [("allocation", f"r = {alloc.r} learnable weight{'s' if alloc.r != 1 else ''} in "
            + ", ".join(alloc.params))]
    strings = alloc.to_dict()
    for name in alloc.params:
        mask = alloc.masks[name]
        rows, cols = mask.shape
        counts = mask.sum(axis=1)
        used = int((counts > 0).sum())
        ccounts = mask.sum(axis=0)
        head = (f"{rows}x{cols}, {int(mask.sum())} weights in {used}/{rows} rows, "
                f"{int((ccounts > 0).sum())}/{cols} columns")
        if rows <= 16 and cols <= 64:
            body = "\n".join(strings[name])
            out.append((f"  {name}", head + "\n" + body))
        else:
            shown = ",".join(str(int(c)) for c in counts[:32]) + (",..." if rows > 32 else "")
            out.append((f"  {name}", head + "\nweights per row: " + shown))
    return out


def _fmt_seconds(s):
    if s < 1:
        return f"{s:.3f}"
    return f"{s:.2f}"


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _dump(obj):
    return json.dumps(obj, default=_json_default)


# ---------------------------------------------------------------------------- progress
class Progress:
    """One-line progress indicator (trials done, rate, time left) on a text stream,
    fed by ``match_probability``'s ``progress`` callback (trials finished per batch)."""

    def __init__(self, total, stream=None, min_interval=0.1):
        self.total = int(total)
        self.stream = sys.stderr if stream is None else stream
        self.min_interval = min_interval
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = -math.inf
        self._width = 0
        self._shown = False

    def __call__(self, count):
        self.done += int(count)
        now = time.perf_counter()
        if self.done < self.total and now - self._last < self.min_interval:
            return
        self._last = now
        elapsed = max(now - self.t0, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else math.inf
        pct = 100.0 * self.done / self.total if self.total else 100.0
        line = (f"fastmp: {self.done}/{self.total} trials ({pct:5.1f}%)  "
                f"{rate:,.0f} trials/s  {fmt_eta(left)} left")
        pad = max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._shown = True

    def close(self):
        if not self._shown:
            return
        if isatty(self.stream):
            self.stream.write("\r" + " " * self._width + "\r")
        else:
            self.stream.write("\n")
        self.stream.flush()
        self._shown = False


# ---------------------------------------------------------------------------- commands
def _resolve_m(alloc, m):
    if m is not None:
        return m
    try:
        return alloc.default_m()
    except ValueError as exc:
        raise CLIError(f"{exc} with --m M") from None


def cmd_estimate(args, stdout, stderr):
    from .estimators import match_probability

    model = parse_model(args.model)
    alloc = build_allocation(model, args)
    m = _resolve_m(alloc, args.m)
    show = args.progress
    if show is None:
        show = args.trials >= PROGRESS_MIN_TRIALS and isatty(stderr)
    bar = Progress(args.trials, stderr) if show else None
    try:
        res = match_probability(model, alloc, m=m, trials=args.trials, seed=args.seed,
                                method=args.method, backend=args.backend,
                                batch_size=args.batch_size, progress=bar,
                                starts=args.starts, adaptive=args.adaptive)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        out = res.to_dict()
        out["model"] = model_spec(model)
        out["allocation"] = alloc.to_dict()
        stdout.write(_dump(out) + "\n")
        return EXIT_OK
    rows = [("model", f"{model!r}")] + _mask_rows(alloc) + [
        ("m", res.m),
        ("r", res.r),
        ("trials", res.trials),
        ("matches", res.matches),
        ("undecided", res.ambiguous),
        ("MP", f"{res.mp:.4f}"),
        ("95% CI", f"[{res.ci_low:.6f}, {res.ci_high:.6f}]"),
        ("method", res.method),
        ("backend", res.backend),
    ] + ([("budget", f"{res.budget.get('max_starts', '-')} starts max, "
                     f"{res.budget.get('near_misses', 0)} uncertified near-misses")]
         if res.budget else []) + [
        ("seed", res.seed),
        ("seconds", _fmt_seconds(res.seconds)),
    ]
    stdout.write(_table(rows) + "\n")
    return EXIT_OK


def cmd_classify(args, stdout, stderr):
    from .theory import classify

    model = parse_model(args.model)
    alloc = build_allocation(model, args)
    c = classify(model, alloc, m=args.m)
    if args.json:
        out = {"kind": c.kind, "rule": c.rule, "reason": c.reason,
               "model": model_spec(model), "allocation": alloc.to_dict(), "m": args.m}
        stdout.write(_dump(out) + "\n")
        return EXIT_OK
    rows = [("model", f"{model!r}")] + _mask_rows(alloc)
    if args.m is not None:
        rows.append(("m", args.m))
    rows += [("kind", c.kind), ("rule", c.rule), ("reason", c.reason)]
    stdout.write(_table(rows) + "\n")
    return EXIT_OK


def _int_list(option, text):
    items = [t.strip() for t in re.split(r"[,\s]+", text.strip()) if t.strip()]
    if not items:
        raise CLIError(f"{option}: expected integers separated by commas, got {text!r}")
    out = []
    for t in items:
        try:
            out.append(int(t))
        except ValueError:
            raise CLIError(f"{option}: expected integers separated by commas, got {t!r}") from None
    return out


def _show_progress(args, stderr):
    return isatty(stderr) if args.progress is None else args.progress


def _interrupted(stderr, out):
    stderr.write(f"\nfastmp: error: interrupted; finished batches are saved in {out}: rerun "
                 "the same command to resume\n")
    return 130


def cmd_figure(args, stdout, stderr):
    from .figures import run_figure

    ns = _int_list("--ns", args.ns) if args.ns is not None else None
    ks = _int_list("--ks", args.ks) if args.ks is not None else None
    try:
        df = run_figure(args.name, trials=args.trials, seed=args.seed, out=args.out,
                        workers=args.workers, ns=ns, ks=ks, starts=args.starts,
                        scheduler=args.scheduler, connect_timeout=args.connect_timeout,
                        show_progress=_show_progress(args, stderr), restart=args.restart)
    except KeyboardInterrupt:
        return _interrupted(stderr, args.out)
    if "allocation" in df.columns:
        cols = ["allocation", "mp", "ci_low", "ci_high", "oracle_mp", "paper_mp", "trials",
                "disagree", "method"]
    else:
        cols = ["n", "k", "frac_rows", "mp", "ci_low", "ci_high", "trials", "matches",
                "undecided", "method"]
    stdout.write(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}") + "\n")
    if df.attrs["batches_resumed"]:
        stdout.write(f"resumed {df.attrs['batches_resumed']} finished batches, computed "
                     f"{df.attrs['batches_run']}\n")
    stdout.write(f"wrote {df.attrs['csv']}\nwrote {df.attrs['png']}\n")
    return EXIT_OK


def cmd_sweep(args, stdout, stderr):
    from .sweeps import sweep

    if not args.model:
        raise CLIError("sweep needs at least one --model (e.g. --model lrnn:n=8,T=4,b=1,d=4)")
    if not args.gen:
        raise CLIError("sweep needs at least one --gen (e.g. --gen rows:param=W,k=4)")
    models = [parse_model(m) for m in args.model]
    ms = []
    for t in (t.strip() for t in args.m.split(",")):
        if t.lower() == "auto":
            ms.append("auto")
            continue
        try:
            value = int(t)
        except ValueError:
            raise CLIError(f"--m: expected integers or 'auto' separated by commas, got {t!r}") from None
        if value < 1:
            raise CLIError(f"--m: m must be >= 1, got {value}")
        ms.append(value)
    try:
        df = sweep(models, args.gen, ms, trials=args.trials, seed=args.seed, out=args.out,
                   batch_size=args.batch_size, trials_per_alloc=args.trials_per_alloc,
                   method=args.method, starts=args.starts, adaptive=args.adaptive,
                   workers=args.workers, scheduler=args.scheduler,
                   connect_timeout=args.connect_timeout,
                   progress=_show_progress(args, stderr), name=args.name,
                   restart=args.restart)
    except KeyboardInterrupt:
        return _interrupted(stderr, args.out)
    cols = ["model", "generator", "m", "r", "mp", "ci_low", "ci_high", "trials", "matches",
            "undecided", "method"]
    stdout.write(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}") + "\n")
    a = df.attrs
    stdout.write(f"batches: {a['batches_run']} computed, {a['batches_resumed']} resumed\n"
                 f"wrote {a['csv']}\nwrote {a['batches']}\n")
    return EXIT_OK


def _add_execution_options(p, what):
    p.add_argument("--workers", type=_positive, default=1, metavar="W",
                   help="local worker processes (default 1; results do not depend on it)")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="run the batches on a Dask cluster: scheduler address, e.g. "
                        "tcp://host:8786 (needs dask.distributed; --workers is ignored)")
    p.add_argument("--connect-timeout", type=_positive_float, default=10.0, metavar="SEC",
                   help="seconds to wait for --scheduler to answer (default 10)")
    p.add_argument("--restart", action="store_true",
                   help=f"discard an earlier {what} in --out instead of resuming it")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")


# ---------------------------------------------------------------------------- parser
def _add_allocation_options(p):
    g = p.add_argument_group("allocation (exactly one of --mask, --mask-file, --alloc)")
    g.add_argument("--mask", action="append", metavar="PARAM=ROWS",
                   help='learnable weights of PARAM as 0/1 rows, e.g. "W=1100,0011" '
                        "(rows separated by , / or ;); repeatable")
    g.add_argument("--mask-file", metavar="PATH",
                   help='JSON {"W": ["1100", "0011"]}, .npz (keys = parameters) or .npy '
                        "(with --param)")
    g.add_argument("--alloc", metavar="GEN",
                   help="generate the allocation: " + ", ".join(_GENERATORS))
    g.add_argument("--param", metavar="NAME",
                   help="parameter for --alloc rows/budget/full and for a .npy mask file")
    g.add_argument("--r", type=_positive, metavar="R",
                   help="--alloc rows: number of learnable weights")
    g.add_argument("--k", type=_positive, metavar="K",
                   help="--alloc rows: number of rows (or columns) used")
    g.add_argument("--axis", choices=("rows", "columns"),
                   help="--alloc rows: spread over rows (default) or columns")
    g.add_argument("--by", choices=("rows", "columns"),
                   help="--alloc thm35: full rows (default) or full columns of W")
    g.add_argument("--alloc-seed", type=_nonnegative, metavar="S",
                   help="seed of the allocation generator (default: --seed)")


def _add_model_options(p):
    """MODEL, the allocation source and --m: shared by estimate and classify."""
    p.add_argument("model", metavar="MODEL", help="e.g. lrnn:n=8,T=4,b=1,d=2 (see below)")
    _add_allocation_options(p)
    p.add_argument("--m", type=_positive, metavar="M",
                   help="number of samples (default r/d); also the m of generators")


def build_parser():
    from . import __version__

    parser = _Parser(
        prog="fastmp", allow_abbrev=False,
        description="Estimate the match probability (MP) of allocations of learnable "
                    "weights, or classify them as maximal / minimal.",
        epilog=_MODEL_HELP + "\n\n" + _ALLOC_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fastmp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    common = dict(formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
                  epilog=_MODEL_HELP + "\n\n" + _ALLOC_HELP)
    est = sub.add_parser("estimate", help="Monte Carlo estimate of MP(A, m)",
                         description="Monte Carlo estimate of the match probability "
                                     "MP(A, m) with a Wilson 95%% interval.", **common)
    _add_model_options(est)
    est.add_argument("--trials", type=_positive, default=1000, metavar="N",
                     help="Monte Carlo trials (default 1000)")
    est.add_argument("--seed", type=_nonnegative, default=0, metavar="S",
                     help="seed of the trials (default 0)")
    est.add_argument("--method", choices=("auto", "linear", "newton", "theorem35", "relu-exact"),
                     default="auto",
                     help="linear (exact rank decision), newton (certified root search for "
                          "polynomial allocations), theorem35 (constructive solver), "
                          "relu-exact (activation patterns, W1 of a ShallowReLU); auto "
                          "picks the first that applies")
    est.add_argument("--starts", type=_positive, default=64, metavar="S",
                     help="newton: at most S random starts per trial (default 64)")
    est.add_argument("--no-adaptive", dest="adaptive", action="store_false",
                     help="newton: always use all --starts instead of stopping once "
                          "doublings find no new match")
    est.add_argument("--backend", choices=("numba", "cython"), default="numba",
                     help="factorisation kernel (default numba)")
    est.add_argument("--batch-size", type=_positive, default=4096, metavar="B",
                     help="trials per compiled batch (default 4096; results do not depend "
                          "on it)")
    est.add_argument("--json", action="store_true", help="print one JSON object")
    est.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help=f"progress line on stderr (default: on for --trials >= "
                          f"{PROGRESS_MIN_TRIALS} when stderr is a terminal)")
    est.set_defaults(func=cmd_estimate)

    cls = sub.add_parser("classify", help="maximal / minimal / undetermined, by theory",
                         description="Classify an allocation as maximal, minimal or "
                                     "undetermined from the paper's theorems (no sampling).",
                         **common)
    _add_model_options(cls)
    cls.add_argument("--seed", type=_nonnegative, default=0, metavar="S",
                     help="default seed of --alloc generators (default 0)")
    cls.add_argument("--json", action="store_true", help="print one JSON object")
    cls.set_defaults(func=cmd_classify)

    fig = sub.add_parser("figure", help="reproduce a figure of the paper (CSV + PNG)",
                         description="Reproduce a figure of the paper: writes DIR/NAME.csv and "
                                     "DIR/NAME.png (rerunning the same command resumes from DIR/NAME.batches.jsonl). "
                                     "NAME: fig2a, fig2b (LRNN, learn W), fig3a "
                                     "(3-layer linear FFN), fig3b (ShallowReLU, learn W1), fig3c "
                                     "(ShallowReLU on scikit-learn's digits, Adam), b11 "
                                     "(Appendix B.1.1).",
                         allow_abbrev=False)
    fig.add_argument("name", metavar="NAME", help="fig2a, fig2b, fig3a, fig3b, fig3c or b11")
    fig.add_argument("--trials", type=_positive, default=1000, metavar="N",
                     help="Monte Carlo trials per point (default 1000)")
    fig.add_argument("--seed", type=_nonnegative, default=0, metavar="S",
                     help="seed (default 0); every point derives its own streams from it")
    fig.add_argument("--out", default=".", metavar="DIR",
                     help="output directory, created if missing (default .)")
    _add_execution_options(fig, "run of this figure")
    fig.add_argument("--ns", metavar="N1,N2",
                     help="network sizes n (default 8,12,16; not for b11)")
    fig.add_argument("--ks", metavar="K1,K2",
                     help="only these k (rows used); default all")
    fig.add_argument("--starts", type=_positive, default=64, metavar="S",
                     help="newton: S random starts per unmatched trial (default 64; "
                          "misses are budget-limited, more starts can raise MP)")
    fig.set_defaults(func=cmd_figure)

    sw = sub.add_parser(
        "sweep", help="resumable sweep over models x generators x m (CSV + JSONL)",
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        description="Run the grid MODELS x GENERATORS x M in batches of trials. Finished "
                    "batches stream to OUT/NAME.batches.jsonl (fsync'd one by one); "
                    "OUT/NAME.csv gets one row per point at the end. Rerunning the same "
                    "command resumes: finished batches are not recomputed, interrupted "
                    "ones are redone. Results depend only on --seed and the arguments.",
        epilog=_MODEL_HELP + """

generators (--gen NAME or NAME:key=value,...):
  rows:param=W,k=4[,r=R][,axis=columns]   r (default d*m) weights in exactly k rows
  thm31                                    decoder, m weights per row (Theorem 3.1)
  thm35[:by=columns]                       LRNN W meeting Theorem 3.5
  budget:param=W2[,maximal=1]              d*m weights within Theorem 3.2/4.1 budgets
  full:param=D                             every weight of the parameter""")
    sw.add_argument("--model", action="append", metavar="MODEL",
                    help="a model (repeat for several), e.g. lrnn:n=8,T=4,b=1,d=4")
    sw.add_argument("--gen", action="append", metavar="GEN",
                    help="an allocation generator (repeat for several), e.g. rows:param=W,k=4")
    sw.add_argument("--m", default="auto", metavar="M1,M2",
                    help="numbers of samples, or auto (the generator's choice, then r/d; "
                         "default auto)")
    sw.add_argument("--trials", type=_positive, default=1000, metavar="N",
                    help="trials per point (default 1000)")
    sw.add_argument("--seed", type=_nonnegative, default=0, metavar="S",
                    help="seed (default 0)")
    sw.add_argument("--out", default=".", metavar="DIR",
                    help="output directory, created if missing (default .)")
    sw.add_argument("--name", default="sweep", metavar="NAME",
                    help="stem of the output files (default sweep)")
    sw.add_argument("--batch-size", type=_positive, default=100, metavar="B",
                    help="trials per batch, the unit of streaming and resume (default 100; "
                         "results do not depend on it)")
    sw.add_argument("--trials-per-alloc", type=_positive, default=1, metavar="A",
                    help="consecutive trials sharing one random allocation (default 1: a "
                         "new allocation every trial, as in App. E.2); must divide "
                         "--batch-size")
    sw.add_argument("--method", choices=("auto", "linear", "newton", "theorem35", "relu-exact"),
                    default="auto", help="as for fastmp estimate (default auto)")
    sw.add_argument("--starts", type=_positive, default=64, metavar="S",
                    help="newton: random starts per unmatched trial (default 64)")
    sw.add_argument("--adaptive", action="store_true",
                    help="newton: stop early once doubling the starts finds no new match "
                         "(judged within each allocation's trials)")
    _add_execution_options(sw, "sweep of this name")
    sw.set_defaults(func=cmd_sweep)
    return parser


def main(argv=None, *, stdout=None, stderr=None):
    """Run the command line; returns the exit status (0 success, 2 error)."""
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            if args.command is None:
                raise CLIError("no command given; choose one of estimate, classify, figure, "
                               "sweep (fastmp -h for help)")
            return args.func(args, stdout, stderr)
        except SystemExit as exc:  # -h / --version
            code = exc.code
            return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_ERROR)
        except KeyboardInterrupt:
            stderr.write("\nfastmp: error: interrupted\n")
            return 130
        except Exception as exc:  # noqa: BLE001 - every error becomes one line
            stderr.write(f"fastmp: error: {_one_line(_message(exc))}\n")
            return EXIT_ERROR
    finally:
        try:
            stdout.flush()
        except (OSError, ValueError):
            pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
