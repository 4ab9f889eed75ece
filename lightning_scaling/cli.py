"""``lightning-scaling`` command line: fit learning curves from CSV or JSON files.

Examples::

    lightning-scaling fit curve.csv                      # columns: size, error
    lightning-scaling fit scaling_sweeps/train/result.json   # a sweep's own output (or its runs.csv)
    lightning-scaling fit runs.csv --x samples --y val_err --group width --json
    lightning-scaling fit curve.csv --plot curve.png --target 0.05 --where split=fit

Rows that repeat a size (within a group) are taken as seeds of that size. A sweep's ``result.json``
or ``runs.csv`` needs no flags: the best grid point at each size is fitted, as the sweep does.
Every user error is one line on stderr naming the argument and the fix, exit code 2, and is found
before any fitting work.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from lightning_scaling.laws import FORMS, LearningCurveFit, fit_learning_curve, fit_shared_exponent
from lightning_scaling.sweep.result import SweepResult
from lightning_scaling.sweep.store import json_default

_X_NAMES = ("size", "sizes", "samples", "num_samples", "train_size", "data_size", "seen_examples", "tokens", "m", "x")
_Y_NAMES = ("error", "errors", "err", "loss", "val_err", "val_error", "val_loss", "best_value", "y")
#: columns every runs.csv a sweep writes has (SweepResult.runs_table)
_RUNS_CSV = ("run_id", "status", "fraction", "size", "train_size", "num_samples", "seed", "error")
#: numeric columns of a sweep's runs, parsed back from runs.csv text
_RUN_NUMBERS = ("fraction", "size", "train_size", "num_samples", "seed", "trainable_params", "best_value",
                "final_value", "error")
#: sizes and errors beyond this (or below its inverse) are out of what the float64 fit resolves
_LIMIT = 1e100


class CLIError(Exception):
    """A user error: printed as one line without a traceback, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block) and reach :func:`main` as a CLIError."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see '{self.prog} --help')")


@dataclass
class _Table:
    """A file's rows (numbered from 1, as the user counts them) and what kind of file it was."""

    path: Path
    rows: list[tuple[int, dict[str, Any]]]
    columns: list[str]
    sweep: str | None = None  # "result.json" or "runs.csv" when the file is a sweep's own output
    size_unit: str | None = None
    monitor: str | None = None


# -- argument checks (at parse time: before any file is read or any fit runs) ---------------------------
def _checked(convert: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """An argparse ``type=``: ``convert(text)`` where ``ok`` holds it, else one line saying what is expected."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return parse


_BOOTSTRAP = _checked(int, lambda n: n >= 0, "an integer >= 0 (bootstrap replicates; 0 gives no intervals)")
_SEED = _checked(int, lambda n: n >= 0, "an integer >= 0 (e.g. --seed 0)")
_CONFIDENCE = _checked(float, lambda c: 0 < c < 1, "a probability between 0 and 1 (e.g. --confidence 0.95)")
_TARGET = _checked(float, lambda t: math.isfinite(t) and t > 0, "a positive, finite error (e.g. --target 0.05)")


def _where(text: str) -> tuple[str, str]:
    col, sep, value = text.partition("=")
    if not sep or not col:
        raise argparse.ArgumentTypeError(f"expected COLUMN=VALUE (e.g. --where split=fit), got {text!r}")
    return col, value


def _plot_path(text: str) -> Path:
    """The figure's path, checked writable now (a missing folder must not cost the fit first)."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(text)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.is_dir():
        raise CLIError(f"argument --plot: {text!r} is a directory; give a file name, e.g. --plot {path / 'curve.png'}")
    if path.suffix.lower().lstrip(".") not in formats:
        raise CLIError(f"argument --plot: {text!r} does not end in an image format matplotlib writes "
                       f"({', '.join(sorted(formats))}); e.g. --plot curve.png")
    existed = path.exists()
    try:
        with path.open("ab"):  # appending changes nothing in a file that exists
            pass
    except OSError as exc:
        raise _unwritable(text, exc) from None
    if not existed:
        path.unlink(missing_ok=True)
    return path


def _unwritable(text: str, exc: OSError) -> CLIError:
    return CLIError(f"argument --plot: cannot write {text!r} ({exc.strerror}); give a path in an existing, writable "
                    "folder")


# -- reading the file ------------------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    if not path.exists():
        raise CLIError(f"FILE {str(path)!r}: no such file; give the path of a CSV or JSON file")
    if path.is_dir():
        inside = path / "result.json"
        hint = f", e.g. {str(inside)!r} of this sweep folder" if inside.is_file() else ""
        raise CLIError(f"FILE {str(path)!r} is a directory; give a CSV or JSON file{hint}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CLIError(f"FILE {str(path)!r}: cannot read it ({exc.strerror}); check the path and its permissions") \
            from None
    if not data.strip():
        raise CLIError(f"FILE {str(path)!r} is empty; give a CSV with a header row (e.g. size,error) or a JSON table")
    try:
        return data.decode("utf-8-sig")  # a spreadsheet's byte-order mark must not rename the first column
    except UnicodeDecodeError as exc:
        raise CLIError(f"FILE {str(path)!r} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                       f"save it as UTF-8, e.g. iconv -f latin1 -t utf-8 {path} > fixed{path.suffix}") from None


def _load_table(path: Path) -> _Table:
    text = _read_text(path)
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        table = _json_table(path, text)
    else:
        table = _csv_table(path, text)
    if not table.rows:
        raise CLIError(f"FILE {str(path)!r} has no rows; give at least four sizes with their errors")
    return table


def _json_table(path: Path, text: str) -> _Table:
    name = repr(str(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"FILE {name} is not valid JSON ({exc}); fix it, or save the table as CSV") from None
    not_table = (f"FILE {name} is JSON but not a table; give a list of records "
                 '([{"size": 1000, "error": 0.3}, ...]), an object of equal-length column lists, or a sweep\'s '
                 "result.json")
    if isinstance(data, dict) and isinstance(data.get("runs"), list):
        runs = data["runs"]
        if all(isinstance(r, dict) and "status" in r for r in runs):
            return _result_json_table(path, data)
        if "seeds" in data and "monitor" in data:
            raise CLIError(f"FILE {name} is a sweep's plan (sweep.json), which holds no results; fit the "
                           "result.json or runs.csv of the same folder")
        data = runs
    if isinstance(data, dict) and "run_id" in data:
        raise CLIError(f"FILE {name} is one run's record; fit the result.json or runs.csv of its sweep folder")
    if isinstance(data, dict):
        lengths = {len(v) for v in data.values() if isinstance(v, list)}
        if len(lengths) != 1:
            raise CLIError(not_table)
        n = lengths.pop()
        data = [{k: v[i] for k, v in data.items() if isinstance(v, list)} for i in range(n)]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise CLIError(not_table)
    return _Table(path, list(enumerate(data, 1)), _columns(data))


def _result_json_table(path: Path, data: dict[str, Any]) -> _Table:
    """A sweep's result.json: its runs, each grid value also a column (as in runs.csv)."""
    rows = []
    for r in data["runs"]:
        params = r.get("params") if isinstance(r.get("params"), dict) else {}
        rows.append({**{k: v for k, v in params.items() if k not in r}, **r})
    return _Table(path, list(enumerate(rows, 1)), _columns(rows), sweep="result.json",
                  size_unit=data.get("size_unit"), monitor=data.get("monitor"))


def _csv_table(path: Path, text: str) -> _Table:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows: list[dict[str, Any]] = list(reader)
    except csv.Error as exc:
        raise CLIError(f"FILE {str(path)!r} is not a readable CSV ({exc}); save it as comma-separated text") from None
    columns = [c for c in reader.fieldnames or () if c is not None]
    if not all(c in columns for c in _RUNS_CSV):
        return _Table(path, list(enumerate(rows, 1)), columns)
    # a sweep's runs.csv: grid columns sit between num_samples and seed (SweepResult.runs_table)
    grid = columns[columns.index("num_samples") + 1: columns.index("seed")]
    for r in rows:
        for k in _RUN_NUMBERS:
            r[k] = _cell_number(r.get(k))
        r["params"] = {k: _cell_number(r.get(k), default=r.get(k)) for k in grid}
    return _Table(path, list(enumerate(rows, 1)), columns, sweep="runs.csv")


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def _cell_number(text: Any, default: Any = None) -> Any:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return default
    return int(v) if v.is_integer() and "." not in str(text) and "e" not in str(text).lower() else v


# -- which rows and columns are fitted -------------------------------------------------------------------
def _pick(columns: Sequence[str], wanted: str | None, defaults: Sequence[str], what: str, flag: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise CLIError(f"column {wanted!r} ({flag}) is not in the file; columns are {list(columns)}")
        return wanted
    lower = {c.lower().replace(" ", "_").replace("-", "_").replace("/", "_"): c for c in columns}
    for name in defaults:
        if name in lower:
            return lower[name]
    raise CLIError(f"cannot tell which column holds the {what}; name it with {flag} (columns: {list(columns)})")


def _keep_where(table: _Table, conditions: Sequence[tuple[str, str]]) -> list[tuple[int, dict[str, Any]]]:
    rows = table.rows
    for col, value in conditions:
        if col not in table.columns:
            raise CLIError(f"argument --where: no column {col!r} in FILE; expected COLUMN=VALUE with a column of "
                           f"{table.columns}")
        rows = [(i, r) for i, r in rows if value in (str(r.get(col)), json.dumps(r.get(col)))]
        if not rows:
            raise CLIError(f"--where '{col}={value}' keeps no rows; values of {col!r} are "
                           f"{sorted({str(r.get(col)) for _, r in table.rows})[:10]}")
    return rows


def _value(table: _Table, row: tuple[int, dict[str, Any]], col: str, flag: str, what: str) -> float:
    """A size or error of one row, or a one-line error naming the row, the column and the fix."""
    i, r = row
    raw: Any = r.get(col)
    where = f"FILE {str(table.path)!r} row {i}: column {col!r} ({flag}) holds {raw!r}"
    try:
        v = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        raise CLIError(f"{where}, which is not a number; fix or remove the row, or name another column with {flag}") \
            from None
    if not (math.isfinite(v) and v > 0):
        extra = " (fits are in log space: use an error or loss > 0, e.g. 1 - accuracy)" if what == "errors" else ""
        raise CLIError(f"{where}; {what} must be positive and finite{extra}: fix or remove the row")
    if not 1 / _LIMIT <= v <= _LIMIT:
        how = "divide it by" if v > 1 else "multiply it by"
        raise CLIError(f"{where}, outside the {1 / _LIMIT:g} to {_LIMIT:g} the fit resolves in float64; rescale "
                       f"the column (e.g. {how} {10.0 ** abs(round(math.log10(v))):g}) and fit again")
    return v


def _curves(table: _Table, rows: list[tuple[int, dict[str, Any]]], x_col: str, y_col: str,
            group_col: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    grouped: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        x, y = _value(table, row, x_col, "--x", "sizes"), _value(table, row, y_col, "--y", "errors")
        key = str(row[1].get(group_col, "")) if group_col else "all"
        grouped[key][x].append(y)
    out = {}
    for key, by_size in grouped.items():
        sizes = sorted(by_size)
        width = max(len(v) for v in by_size.values())
        errors = np.full((len(sizes), width), np.nan)
        for i, s in enumerate(sizes):
            errors[i, : len(by_size[s])] = by_size[s]
        out[key] = (np.array(sizes), errors[:, 0] if width == 1 else errors)
    return out


def _sweep_rows(table: _Table, rows: list[tuple[int, dict[str, Any]]],
                args: argparse.Namespace) -> tuple[list[tuple[int, dict[str, Any]]], str, str, dict[str, Any]]:
    """The rows to fit from a sweep's own output, their x and y columns, and what was fitted.

    Without ``--x``/``--y``/``--group``: the best grid point at each size (the sweep's learning curve),
    chosen by the sweep's own rule (:meth:`SweepResult.from_records`). With one of them: the ok runs.
    """
    ok = [(i, r) for i, r in rows if r.get("status") == "ok"]
    if not ok:
        kept = " kept by --where" if args.where else ""
        raise CLIError(f"FILE {str(table.path)!r}: none of its {len(rows)} runs{kept} has status ok; nothing to fit")
    # the package writes train_size (in size_unit); a file without any falls back to the plan's fractions
    sized = any(_finite(r.get(k)) for _, r in ok for k in ("train_size", "num_samples"))
    x_col = "train_size" if sized else next((k for k in ("fraction", "size") if any(_finite(r.get(k)) for _, r in ok)),
                                            "train_size")
    fitted: dict[str, Any] = {"file": str(table.path), "kind": f"sweep {table.sweep}", "runs": len(table.rows),
                              "runs_ok": len(ok), "x": x_col, "y": "error", "size_unit": table.size_unit,
                              "monitor": table.monitor}
    if args.x or args.y or args.group:
        x_col = _pick(table.columns, args.x, (x_col,), "sizes", "--x")
        y_col = _pick(table.columns, args.y, ("error",), "errors", "--y")
        fitted.update(rows="ok runs", x=x_col, y=y_col, group=args.group)
        return ok, x_col, y_col, fitted
    usable = [(i, r) for i, r in ok if r.get("error") is not None and (_finite(r.get(x_col)) or sized)]
    for row in usable:
        _value(table, row, "error", "--y", "errors")
    records = [{"run_id": r.get("run_id", i), "status": "ok", "fraction": r.get("fraction"), "size": r.get("size"),
                "train_size": r.get(x_col), "num_samples": r.get("num_samples") if sized else None,
                "params": r.get("params") or {}, "seed": r.get("seed"), "trainable_params": r.get("trainable_params"),
                "budget": r.get("budget"), "best_value": float(r["error"])} for i, r in usable]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the laws fitted alongside are not used: only the choice of rows
        try:
            best = SweepResult.from_records(records, monitor=table.monitor or "error", mode="min",
                                            to_error_fn=float, bootstrap=0).best
        except (ValueError, RuntimeError) as exc:
            raise CLIError(f"FILE {str(table.path)!r}: {exc}") from None
    if not best:
        raise CLIError(f"FILE {str(table.path)!r}: no ok run has an error and a training-set size (train_size, "
                       "num_samples, fraction or size); name the columns with --x and --y")
    fitted.update(rows="best grid point per size", best=[
        {"train_size": b["train_size"], "params": b["params"], "errors": b["errors"]} for b in best])
    out = [(n, {x_col: b["train_size"], "error": e}) for n, b in enumerate(best, 1) for e in b["errors"]]
    return out, x_col, "error", fitted


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _describe(fitted: dict[str, Any]) -> list[str]:
    """What was fitted from a sweep's file, in words (the first lines of the text output)."""
    unit = f" ({fitted['size_unit']})" if fitted.get("size_unit") else ""
    of = f" of {fitted['monitor']}" if fitted.get("monitor") else ""
    counts = f"{fitted['runs_ok']} ok runs of {fitted['runs']} in {fitted['kind']} {fitted['file']}"
    if fitted["rows"] == "ok runs":
        per = f", one curve per {fitted['group']}" if fitted.get("group") else ""
        return [f"fitted: the {counts}{per}; x = {fitted['x']}{unit}, y = {fitted['y']}{of}"]
    lines = [f"fitted: the best grid point at each size (the sweep's learning curve), from the {counts}; "
             f"x = {fitted['x']}{unit}, y = error{of}"]
    for b in fitted["best"]:
        label = ", ".join(f"{k}={v}" for k, v in sorted(b["params"].items())) or "the model"
        n = len(b["errors"])
        lines.append(f"  {fitted['x']} {b['train_size']:.6g}: {label}, {n} seed{'s' * (n > 1)}")
    return lines


# -- the command -----------------------------------------------------------------------------------------
def _fit_command(args: argparse.Namespace) -> int:
    plot = _plot_path(args.plot) if args.plot else None
    table = _load_table(Path(args.file))
    rows = _keep_where(table, args.where or ())
    if args.group is not None and args.group not in table.columns:
        raise CLIError(f"column {args.group!r} (--group) is not in the file; columns are {table.columns}")
    fitted: dict[str, Any] | None = None
    if table.sweep:
        rows, x_col, y_col, fitted = _sweep_rows(table, rows, args)
    else:
        x_col = _pick(table.columns, args.x, _X_NAMES, "sizes", "--x")
        y_col = _pick(table.columns, args.y, _Y_NAMES, "errors", "--y")
    curves = _curves(table, rows, x_col, y_col, args.group)
    fits: dict[str, LearningCurveFit] = {}
    for name, (x, y) in curves.items():
        try:
            fits[name] = fit_learning_curve(x, y, form=args.form, bootstrap=args.bootstrap, confidence=args.confidence,
                                            loss=args.loss, seed=args.seed, detect_small_data=not args.all_points)
        except (ValueError, RuntimeError) as exc:
            label = f" (group {name!r})" if args.group else ""
            raise CLIError(f"FILE {args.file!r}{label}: {exc}") from None
        if fits[name].constant:  # the fitter gives a flat law; the command reports it as the data problem it is
            label = f" (group {name!r})" if args.group else ""
            raise CLIError(f"FILE {args.file!r}{label}: {fits[name].notes[0]}")
    shared = None
    if len(fits) >= 2 and args.form == "hestness":
        used: dict[str, tuple[Any, Any]] = {k: (f.sizes[f.start_index:], f.errors[f.start_index:])
                                            for k, f in fits.items()}
        try:
            shared = fit_shared_exponent(used, bootstrap=min(args.bootstrap, 500), confidence=args.confidence)
        except ValueError as exc:
            print(f"note: no shared-exponent test: {exc}", file=sys.stderr)
    needed = {k: [_data_needed(f, t) for t in args.target or ()] for k, f in fits.items()}
    if plot is not None:
        _save_plot(plot, fits, args.group, (x_col, y_col), fitted or {})
    if args.json:
        print(json.dumps(_payload(args, fits, shared, needed, fitted, plot), indent=2, default=json_default))
        return 0
    for line in _describe(fitted) if fitted else ():
        print(line)
    for name, fit in fits.items():
        if args.group:
            print(f"[{args.group} = {name}]")
        print(fit)
        for t, d in zip(args.target or (), needed[name]):
            print(f"  data needed for error {t:g}: {d}")
    if shared is not None:
        print(shared)
    if plot is not None:
        print(f"figure: {plot}")
    return 0


def _payload(args: argparse.Namespace, fits: dict[str, LearningCurveFit], shared: Any, needed: dict[str, list[Any]],
             fitted: dict[str, Any] | None, plot: Path | None) -> dict[str, Any]:
    payload: dict[str, Any]
    if args.group is None:
        payload = fits["all"].to_dict()
        if args.target:
            payload["data_needed"] = [d.to_dict() for d in needed["all"]]
    else:
        payload = {"groups": {}, "shared_exponent": shared.to_dict() if shared else None}
        for k, f in fits.items():
            payload["groups"][k] = f.to_dict()
            if args.target:
                payload["groups"][k]["data_needed"] = [d.to_dict() for d in needed[k]]
    if fitted is not None:
        payload["fitted"] = fitted
    if plot is not None:
        payload["plot"] = str(plot)
    return payload


def _data_needed(fit: LearningCurveFit, target: float) -> Any:
    try:
        return fit.data_needed(target)
    except ValueError as exc:
        raise CLIError(f"argument --target {target:g}: {exc}") from None


def _save_plot(path: Path, fits: dict[str, LearningCurveFit], group: str | None, columns: tuple[str, str],
               fitted: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8), layout="constrained")
    for name, fit in fits.items():
        fit.plot(ax=ax, label=name if group else None)
    unit, monitor = fitted.get("size_unit"), fitted.get("monitor")
    ax.set_xlabel(f"{columns[0]} ({unit})" if unit else columns[0])
    ax.set_ylabel(f"{columns[1]} ({monitor})" if monitor else columns[1])
    try:
        fig.savefig(path, dpi=130)
    except OSError as exc:
        raise _unwritable(str(path), exc) from None
    finally:
        plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The ``lightning-scaling`` argument parser (every value checked as it is parsed)."""
    parser = _Parser(prog="lightning-scaling", description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a learning curve from a CSV or JSON file")
    fit.add_argument("file", metavar="FILE",
                     help="CSV with a header row, or JSON (records, columns, or a sweep's result.json); a sweep's "
                          "result.json or runs.csv is fitted as the sweep does (best grid point per size)")
    fit.add_argument("--x", help="column of training-set sizes (default: size, samples, m, x, ...; train_size for a "
                                 "sweep's files)")
    fit.add_argument("--y", help="column of errors (default: error, loss, y, ...)")
    fit.add_argument("--group", help="column naming separate curves (e.g. model width); adds a shared-exponent test")
    fit.add_argument("--where", action="append", type=_where, metavar="COL=VALUE",
                     help="keep only rows where COL equals VALUE (repeatable)")
    fit.add_argument("--form", default="hestness", choices=sorted(FORMS), help="functional form (default: hestness)")
    fit.add_argument("--loss", default="squared", choices=("squared", "huber"))
    fit.add_argument("--all-points", action="store_true", help="fit every point (no small-data region detection)")
    fit.add_argument("--bootstrap", type=_BOOTSTRAP, default=1000,
                     help="bootstrap replicates for intervals (default 1000)")
    fit.add_argument("--confidence", type=_CONFIDENCE, default=0.95)
    fit.add_argument("--seed", type=_SEED, default=0)
    fit.add_argument("--target", type=_TARGET, action="append",
                     help="report the data needed for this error (repeatable)")
    fit.add_argument("--json", action="store_true", help="print machine-readable JSON")
    fit.add_argument("--plot", metavar="PNG", help="write the paper-style log-log figure here")
    fit.set_defaults(func=_fit_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lightning-scaling`` command: 0 on success, 2 (one line on stderr) on a user error."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except CLIError as exc:
        print(f"lightning-scaling: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
