"""``lightning-scaling`` command line: fit learning curves from CSV or JSON files.

Examples::

    lightning-scaling fit curve.csv                      # columns: size, error
    lightning-scaling fit runs.csv --x samples --y val_err --group width --json
    lightning-scaling fit curve.csv --plot curve.png --target 0.05 --where split=fit

Rows that repeat a size (within a group) are taken as seeds of that size.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightning_scaling.laws import FORMS, fit_learning_curve, fit_shared_exponent
from lightning_scaling.sweep.store import json_default

_X_NAMES = ("size", "sizes", "samples", "num_samples", "train_size", "data_size", "seen_examples", "tokens", "m", "x")
_Y_NAMES = ("error", "errors", "err", "loss", "val_err", "val_error", "val_loss", "best_value", "y")


class CLIError(Exception):
    """A user error: printed without a traceback, exit code 2."""


def _load_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise CLIError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CLIError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(data, dict) and isinstance(data.get("runs"), list):
            data = data["runs"]  # a sweep's result.json
        if isinstance(data, dict):
            lengths = {len(v) for v in data.values() if isinstance(v, list)}
            if len(lengths) != 1:
                raise CLIError(f"{path}: a JSON object must map column names to lists of one length")
            n = lengths.pop()
            data = [{k: v[i] for k, v in data.items() if isinstance(v, list)} for i in range(n)]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise CLIError(f"{path}: expected a list of records, an object of columns, or a sweep result.json")
        return data
    return list(csv.DictReader(text.splitlines()))


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


def _curves(rows: list[dict[str, Any]], x_col: str, y_col: str, group_col: str | None):
    grouped: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i, row in enumerate(rows):
        try:
            x, y = float(row[x_col]), float(row[y_col])
        except (TypeError, ValueError, KeyError):
            bad = f"{x_col}={row.get(x_col)!r}, {y_col}={row.get(y_col)!r}"
            raise CLIError(f"row {i + 1}: {bad} are not numbers") from None
        key = str(row.get(group_col, "")) if group_col else "all"
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


def _fit_command(args: argparse.Namespace) -> int:
    rows = _load_rows(Path(args.file))
    if not rows:
        raise CLIError(f"{args.file}: no rows")
    columns = list(rows[0])
    for cond in args.where or ():
        col, sep, value = cond.partition("=")
        if not sep or col not in columns:
            raise CLIError(f"--where {cond!r}: expected COLUMN=VALUE with a column of {columns}")
        rows = [r for r in rows if str(r.get(col)) == value]
        if not rows:
            raise CLIError(f"--where {cond!r} keeps no rows")
    x_col = _pick(columns, args.x, _X_NAMES, "sizes", "--x")
    y_col = _pick(columns, args.y, _Y_NAMES, "errors", "--y")
    if args.group is not None and args.group not in columns:
        raise CLIError(f"column {args.group!r} (--group) is not in the file; columns are {columns}")
    curves = _curves(rows, x_col, y_col, args.group)
    fits = {}
    for name, (x, y) in curves.items():
        try:
            fits[name] = fit_learning_curve(x, y, form=args.form, bootstrap=args.bootstrap, confidence=args.confidence,
                                            loss=args.loss, seed=args.seed, detect_small_data=not args.all_points)
        except ValueError as exc:
            label = f" (group {name!r})" if args.group else ""
            raise CLIError(f"{args.file}{label}: {exc}") from None
        if fits[name].constant:  # the fitter gives a flat law; the command reports it as the data problem it is
            label = f" (group {name!r})" if args.group else ""
            raise CLIError(f"{args.file}{label}: {fits[name].notes[0]}")
    shared = None
    if len(fits) >= 2 and args.form == "hestness":
        used = {k: (f.sizes[f.start_index:], f.errors[f.start_index:]) for k, f in fits.items()}
        try:
            shared = fit_shared_exponent(used, bootstrap=min(args.bootstrap, 500), confidence=args.confidence)
        except ValueError as exc:
            print(f"note: no shared-exponent test: {exc}", file=sys.stderr)

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.8), layout="constrained")
        for name, fit in fits.items():
            fit.plot(ax=ax, label=name if args.group else None)
        ax.set_xlabel(x_col)
        ax.set_ylabel(y_col)
        fig.savefig(args.plot, dpi=130)
        plt.close(fig)

    if args.json:
        payload: dict[str, Any]
        if args.group is None:
            payload = fits["all"].to_dict()
            if args.target:
                payload["data_needed"] = [fits["all"].data_needed(t).to_dict() for t in args.target]
        else:
            payload = {"groups": {}, "shared_exponent": shared.to_dict() if shared else None}
            for k, f in fits.items():
                payload["groups"][k] = f.to_dict()
                if args.target:
                    payload["groups"][k]["data_needed"] = [f.data_needed(t).to_dict() for t in args.target]
        if args.plot:
            payload["plot"] = str(args.plot)
        print(json.dumps(payload, indent=2, default=json_default))
        return 0

    for name, fit in fits.items():
        if args.group:
            print(f"[{args.group} = {name}]")
        print(fit)
        for t in args.target or ():
            print(f"  data needed for error {t:g}: {fit.data_needed(t)}")
    if shared is not None:
        print(shared)
    if args.plot:
        print(f"figure: {args.plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightning-scaling", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a learning curve from a CSV or JSON file")
    fit.add_argument("file", help="CSV with a header row, or JSON (records, columns, or a sweep's result.json)")
    fit.add_argument("--x", help="column of training-set sizes (default: size, samples, m, x, ...)")
    fit.add_argument("--y", help="column of errors (default: error, loss, y, ...)")
    fit.add_argument("--group", help="column naming separate curves (e.g. model width); adds a shared-exponent test")
    fit.add_argument("--where", action="append", metavar="COL=VALUE", help="keep only rows where COL equals VALUE")
    fit.add_argument("--form", default="hestness", choices=sorted(FORMS), help="functional form (default: hestness)")
    fit.add_argument("--loss", default="squared", choices=("squared", "huber"))
    fit.add_argument("--all-points", action="store_true", help="fit every point (no small-data region detection)")
    fit.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for intervals (default 1000)")
    fit.add_argument("--confidence", type=float, default=0.95)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--target", type=float, action="append", help="report the data needed for this error (repeatable)")
    fit.add_argument("--json", action="store_true", help="print machine-readable JSON")
    fit.add_argument("--plot", metavar="PNG", help="write the paper-style log-log figure here")
    fit.set_defaults(func=_fit_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lightning-scaling`` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"lightning-scaling: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
