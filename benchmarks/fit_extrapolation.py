"""How well the fitter extrapolates real learning curves, against the published estimators.

Run from the repository root (the data lies in ``../shared/benchmark-data``)::

    python benchmarks/fit_extrapolation.py [--data DIR] [--chinchilla-bootstrap 200] [--every N] [--curves-only]

Sections, each measured in this one run:

1. Speed: one fit plus 1,000 bootstrap replicates on 20 points (target < 1 s), next to the same
   replicates solved one ``scipy.optimize.least_squares`` call at a time.
2. BNSL noiseless known-answer curve (Caballero et al. 2023): recovered parameters; and the
   four-digit-addition curve, extrapolated by each form.
3. Chinchilla L(N, D) on Epoch's 240 points: parameters against the published replication
   (target within 1%), bootstrap intervals next to Epoch's.
4. lcdb_dev, 400 LCDB classifier curves, and 5. the Alabdulmohsin et al. 2022 benchmark, 92 curves:
   mean / median RMSLE on the held-out rows (per domain and overall) of our default estimator and of
   M1, M2 (least squares in log space, all training rows), M2 on the last half of the rows, M4 fitted
   as the paper's code fits it (:func:`reference_m4`) and the last value; the share of held-out points
   inside our 95% prediction interval and its median relative width, the share of targets whose
   size ``data_needed``'s interval holds, failures, and seconds per fit with its interval. Lines
   ``coverage95: <set>=X``, ``lcdb_dev mean RMSLE: ours=X m2_last_half=X last_value=X``, and last
   ``mean RMSLE: ours=X m1=X m2=X m4=X`` (the Alabdulmohsin benchmark).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import time
import warnings
from collections import OrderedDict, defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from lightning_scaling.laws import fit_joint_law, fit_learning_curve, get_form
from lightning_scaling.laws._core import fit_form

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "benchmark-data"


def rmsle(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.log(pred) - np.log(y)) ** 2)))


# -- 1. speed -----------------------------------------------------------------------------------------
def bench_speed() -> None:
    rng = np.random.default_rng(0)
    m = np.geomspace(1e3, 1e6, 20)
    eps = (2.0 * m**-0.3 + 0.02) * np.exp(rng.normal(0, 0.03, m.size))
    fit_learning_curve(m, eps, bootstrap=10)  # warm-up: imports, caches
    t0 = time.perf_counter()
    fit = fit_learning_curve(m, eps, bootstrap=1000, detect_small_data=False)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit_learning_curve(m, eps, bootstrap=1000)
    ours_detect = time.perf_counter() - t0

    # the same replicates, one scipy least_squares call each, warm-started at the fit
    p0 = np.array([fit.params["alpha"], fit.params["beta"], fit.params["gamma"]])
    counts = rng.multinomial(m.size, np.full(m.size, 1 / m.size), size=200)
    t0 = time.perf_counter()
    for c in counts:
        sw = np.sqrt(c)
        least_squares(lambda p, sw=sw: sw * (np.log(p[0] * m ** p[1] + p[2]) - np.log(eps)), p0,
                      bounds=([0, -5, 0], [np.inf, 0, eps.min()]))
    scipy_1000 = (time.perf_counter() - t0) * 1000 / len(counts)
    print("== speed: fit + 1,000 bootstrap replicates, 20 points")
    print(f"ours (batched LM):                   {ours:.3f} s  (target < 1 s)")
    print(f"ours with small-data detection:      {ours_detect:.3f} s")
    print(f"scipy least_squares, one per replicate: {scipy_1000:.3f} s (200 timed, scaled to 1,000)")
    print(f"speed-up: {scipy_1000 / ours:.1f}x")
    print()


# -- 2. BNSL -----------------------------------------------------------------------------------------
def bench_bnsl(data: Path) -> None:
    truth = OrderedDict(gamma=0.41388453, b=2.27727229, c0=0.05507735, c1=5.66290382, d=612.58361729, f=0.05919304)
    f = get_form("broken_power_law")
    x = np.arange(1, 4096, dtype=float)
    y = f.predict(np.array(list(truth.values())), x)
    fit = fit_learning_curve(x[:405], y[:405], form="broken_power_law", bootstrap=0)
    full = fit_learning_curve(x[::8], y[::8], form="broken_power_law", bootstrap=0)
    print("== BNSL noiseless known-answer curve: fit on x = 1..405 (as upstream), and on every 8th x of 1..4095")
    print("param      truth     x<=405   rel.err     all x   rel.err")
    for k, v in truth.items():
        a, b = fit.params[k], full.params[k]
        print(f"{k:<6} {v:>10.5g} {a:>10.5g} {abs(a - v) / v:>9.1e} {b:>9.5g} {abs(b - v) / v:>9.1e}")
    # the break lies past x = 405, where only the onset of the bend shows: that onset fixes
    # c1 * d^(-1/f), not c1 and d apart
    def onset(p):
        return np.log(p["c1"]) - np.log(p["d"]) / p["f"]

    print(f"log(c1) - log(d)/f, what x <= 405 determines: truth {onset(truth):.4f}, fit {onset(fit.params):.4f}")
    print(f"extrapolation RMSLE on x = 406..4095: {rmsle(fit.predict(x[405:]).value, y[405:]):.2e}")

    rows = list(csv.DictReader((data / "bnsl" / "four_digit_addition_dataset_size.csv").open()))
    xs = np.array([float(r["train_dataset_size"]) for r in rows])
    ys = np.array([float(r["test_cross_entropy"]) for r in rows])
    is_fit = np.array([r["split"] == "fit" for r in rows])
    scores = []
    for name in ("broken_power_law", "m4", "hestness", "power_law"):
        try:
            p = fit_learning_curve(xs[is_fit], ys[is_fit], form=name, bootstrap=0, detect_small_data=False)
            scores.append(f"{name}={rmsle(p.predict(xs[~is_fit]).value, ys[~is_fit]):.4f}")
        except (ValueError, RuntimeError) as exc:
            scores.append(f"{name}=failed({exc})")
    print("four-digit addition (non-power-law), RMSLE on the 3 held-out points: " + " ".join(scores))
    print()


# -- 3. Chinchilla -----------------------------------------------------------------------------------
def bench_chinchilla(data: Path, bootstrap: int) -> None:
    rows = list(csv.DictReader((data / "chinchilla_epoch" / "svg_extracted_data.csv").open()))
    n = np.array([float(r["Model Size"]) for r in rows])
    c = np.array([float(r["Training FLOP"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    keep = np.sort(np.argsort(loss)[:-5])  # Epoch drop the five highest-loss points
    t0 = time.perf_counter()
    fit = fit_joint_law(n[keep], c[keep] / (6 * n[keep]), loss[keep], bootstrap=bootstrap)
    secs = time.perf_counter() - t0
    ref = {"E": 1.8172, "A": 477.8, "B": 2143.9, "alpha": 0.3473, "beta": 0.3672}
    epoch_ci = {"E": (1.769, 1.871), "A": (285.2, 743.6), "B": (1042.4, 5810.3), "alpha": (0.317, 0.373),
                "beta": (0.331, 0.415)}
    print(f"== Chinchilla L(N, D), Epoch's 240 points, Huber 1e-3 on log L, L-BFGS ({secs:.1f} s "
          f"with {bootstrap} bootstrap replicates)")
    print("param     ours        Epoch L-BFGS  rel.diff   ours 95% CI              Epoch 95% CI (their MLE)")
    worst = 0.0
    for k, v in ref.items():
        ours = getattr(fit, k)
        rel = abs(ours - v) / v
        worst = max(worst, rel)
        lo, hi = fit.intervals[k]
        elo, ehi = epoch_ci[k]
        print(f"{k:<6} {ours:>11.5g} {v:>11.5g} {rel:>10.3%}   [{lo:>9.4g}, {hi:>9.4g}]   [{elo:>9.4g}, {ehi:>9.4g}]")
    print(f"objective (Huber sum): ours {fit.objective:.6g}, Epoch 0.00101827; worst parameter difference "
          f"{worst:.3%} (target < 1%)")
    print()


# -- 4. Alabdulmohsin et al. 2022 ---------------------------------------------------------------------
def load_curves(data: Path):
    curves: OrderedDict = OrderedDict()
    folder = data / "alabdulmohsin2022_benchmark"
    for fname in ("benchmark.vision.csv", "benchmark.lang.csv"):
        for r in csv.DictReader((folder / fname).open()):
            key = (r["Domain"], r["Task"], r["Model"])
            # the LM 1.68e7 curve appears twice in the file; a set drops the exact duplicates
            curves.setdefault(key, set()).add((float(r["Seen Examples"]), float(r["Loss"]), int(r["Training"])))
    out = []
    for key, rows in curves.items():
        a = np.array(sorted(rows))
        tr, te = a[a[:, 2] == 1], a[a[:, 2] == 0]
        out.append((key, tr[:, 0], tr[:, 1], te[:, 0], te[:, 1]))
    return out


#: the paper notebook's M4 settings per domain: (initial err_0, up_bound); error rates are bounded by 1
M4_SETTINGS = {"IC": (1.0, 1.0), "NMT": (1.0, np.inf), "LM": (1.0, np.inf), "BB": (1.001, 1.0)}


def reference_m4(curves, err_0, up_bound, max_iterations: int = 10_000):
    """M4 fitted as Alabdulmohsin et al. 2022 fit it, for many curves ``[(x, y), ...]`` at once.

    ``err_0`` (initial value) and ``up_bound`` (``inf`` for none) are given per curve.

    A port of google-research ``revisiting_neural_scaling_laws/methods/m4.py`` and ``base.py``
    (Apache-2.0), run with the settings of the paper's notebook (:data:`M4_SETTINGS`). Each round fits
    ``(log beta, -c, alpha)`` by non-negative least squares in
    ``log(y - e_inf) = log beta + c log x + alpha log(err_0 - y)`` (the design matrix is built once, from
    the initial ``err_0``, as upstream), then moves ``(e_inf, e_0)``: 1,000 gradient steps (lr 1e-8) in
    each of the first 100 rounds, 100 Newton steps (step 0.1) in each later one, each step projected onto
    ``0 <= e_inf <= min(y) - 1e-3``, ``max(y) + 1e-3 <= e_0 <= up_bound + 1e-3``. A curve stops once beta
    moves by less than 1e-10. Predictions take the best of 10,000 grid points, as upstream.
    The curves advance together (the 3-variable NNLS solved over its 8 active sets); rounds run to the
    10,000 cap on some curves, so the 92 take a minute or two.

    Returns one predict function per curve.
    """
    margin, eps = 1e-3, 1e-5
    k_n = len(curves)
    n = np.array([len(x) for x, _ in curves])
    mask = (np.arange(n.max())[None] < n[:, None]).astype(float)
    ymin = np.array([y.min() for _, y in curves])
    ymax = np.array([y.max() for _, y in curves])
    x_pad = np.ones(mask.shape)
    y_pad = np.repeat(((ymin + ymax) / 2)[:, None], mask.shape[1], axis=1)  # keeps every log finite
    for i, (x, y) in enumerate(curves):
        x_pad[i, : len(x)], y_pad[i, : len(y)] = x, y
    lx = np.log(x_pad)
    min_err, max_err = ymin - margin, ymax + margin
    err_0 = np.asarray(err_0, dtype=float)
    e0_cap = np.asarray(up_bound, dtype=float) + margin
    design = np.stack([np.ones_like(lx), -lx, np.log(err_0[:, None] - y_pad)], axis=-1) * mask[..., None]
    # NNLS with 3 unknowns: the best feasible least-squares solution over the 7 non-empty supports
    supports = [s for r in (1, 2, 3) for s in itertools.combinations(range(3), r)]
    pinvs = [np.linalg.pinv(design[:, :, list(s)]) for s in supports]

    def nnls(labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
        best = np.zeros((len(rows), 3))
        best_res = np.sum(labels**2, axis=1)
        for s, pinv in zip(supports, pinvs):
            coef = np.einsum("kpn,kn->kp", pinv[rows], labels)
            res = np.sum((np.einsum("knp,kp->kn", design[rows][:, :, list(s)], coef) - labels) ** 2, axis=1)
            ok = np.all(coef >= -1e-12, axis=1) & (res < best_res - 1e-15)
            full = np.zeros((len(rows), 3))
            full[:, list(s)] = np.maximum(coef, 0.0)
            best[ok], best_res[ok] = full[ok], res[ok]
        return best

    e_inf, e_0 = min_err.copy(), err_0.copy()
    log_beta, c, alpha = np.zeros(k_n), np.full(k_n, -0.5), np.zeros(k_n)
    old_beta = np.ones(k_n)
    active = np.arange(k_n)
    for k in range(max_iterations):
        if not len(active):
            break
        a = active
        y, w, lxa, cnt = y_pad[a], mask[a], lx[a], n[a]
        coef = nnls(np.log(y - e_inf[a][:, None]) * w, a)
        log_beta[a], c[a], alpha[a] = coef[:, 0], -coef[:, 1], coef[:, 2]
        al = alpha[a][:, None]
        lf = log_beta[a][:, None] + c[a][:, None] * lxa
        ei, e0 = e_inf[a][:, None], e_0[a][:, None]
        for _ in range(1000 if k < 100 else 100):
            lg = np.log(y - ei) - al * np.log(e0 - y)
            r = (lg - lf) * w
            g_inf = -np.sum(r / (y - ei), axis=1, keepdims=True) / cnt[:, None]
            g_0 = -al * np.sum(r / (e0 - y), axis=1, keepdims=True) / cnt[:, None]
            if k < 100:
                ei, e0 = ei - 1e-8 * g_inf, e0 - 1e-8 * g_0
            else:
                h_inf = np.sum(w * (1 - lg + lf) / (y - ei) ** 2, axis=1, keepdims=True) / cnt[:, None]
                h_0 = al * np.sum(w * (al + lg - lf) / (e0 - y) ** 2, axis=1, keepdims=True) / cnt[:, None]
                with np.errstate(divide="ignore", invalid="ignore"):
                    ei = np.where(np.abs(h_inf) > eps, ei - 0.1 * g_inf / h_inf, ei)
                    e0 = np.where(np.abs(h_0) > eps, e0 - 0.1 * g_0 / h_0, e0)
            ei = np.minimum(np.maximum(ei, 0.0), min_err[a][:, None])
            e0 = np.minimum(np.maximum(e0, max_err[a][:, None]), e0_cap[a][:, None])
        e_inf[a], e_0[a] = ei[:, 0], e0[:, 0]
        beta = np.exp(log_beta[a])
        done = (np.abs(beta - old_beta[a]) < 1e-10) & (k > 101)
        old_beta[a] = beta
        active = a[~done]

    def predictor(i: int):
        def predict(xt: np.ndarray) -> np.ndarray:
            f = np.exp(log_beta[i]) * np.asarray(xt, dtype=float) ** c[i]
            if abs(alpha[i]) < eps:
                return e_inf[i] + f
            span = e_0[i] - e_inf[i]
            grid = np.linspace(0, span, 10_000)
            gap = np.abs(grid[None] - f[:, None] * (span - grid[None]) ** alpha[i])
            return grid[np.argmin(gap, axis=1)] + e_inf[i]

        return predict

    return [predictor(i) for i in range(k_n)]


def load_lcdb(data: Path):
    """The 400 LCDB curves of ``lcdb_dev.csv`` as ``(("lcdb", id, ""), x, y, x_test, y_test)``."""
    rows: OrderedDict = OrderedDict()
    for r in csv.DictReader((data / "lcdb_dev.csv").open()):
        rows.setdefault(r["curve_id"], []).append((float(r["x"]), float(r["y"]), r["split"] == "fit"))
    out = []
    for cid, pts in rows.items():
        a = np.array(pts)
        fit = a[:, 2] == 1
        out.append((("lcdb", cid, ""), a[fit, 0], a[fit, 1], a[~fit, 0], a[~fit, 1]))
    return out


def _plain(form, x, y):
    params, _ = fit_form(form, x, y)
    return lambda xt: form.predict(params, xt)


def _last_half(x, y):
    """M2 on the larger-x half of the fit points (at least 3), as the shared README's baseline."""
    k = min(len(x) // 2, max(len(x) - 3, 0))
    return _plain(get_form("hestness"), x[k:], y[k:])


ESTIMATORS = ("ours", "m1", "m2", "m2_last_half", "m4", "last_value")
#: every baseline as ``(x, y) -> predict``; M4 is fitted for all curves at once (``reference_m4``)
BASELINES = {
    "m1": lambda x, y: _plain(get_form("power_law"), x, y),
    "m2": lambda x, y: _plain(get_form("hestness"), x, y),
    "m2_last_half": lambda x, y: _last_half(x, y),
    "m4": None,
    "last_value": lambda x, y: lambda xt: np.full(len(xt), y[-1]),
}


def smoothed(yt: np.ndarray, half: int = 2) -> np.ndarray:
    """Running median of the held-out errors over ``2 * half + 1`` points (fewer at the ends)."""
    return np.array([np.median(yt[max(0, i - half): i + half + 1]) for i in range(len(yt))])


def _data_needed_hit(fit, x, y, xt, yt):
    """Does ``data_needed``'s interval contain the size where the held-out curve reaches a target?

    The target is the held-out error midway along the held-out points; the size that reaches it is
    the first held-out size where the held-out curve, smoothed by a running median of 5 points, is at
    or below it. Unsmoothed, a curve with hundreds of noisy held-out points (the benchmark's image
    classification curves) "reaches" the target at its first noise dip, the minimum of many runs,
    which is not what one new run at that size is predicted to measure. ``None`` where the held-out
    curve never gets below the last fitted error (nothing to extrapolate to)."""
    target = float(yt[len(yt) // 2])
    below = np.flatnonzero(smoothed(yt) <= target)
    if target >= y[-1] or not len(below):
        return None
    need = fit.data_needed(target)
    return bool(need.lower <= xt[below[0]] <= need.upper)


def evaluate(curves, m4):
    """Score every estimator on every curve; ours also for its 95% prediction interval and its speed."""
    table: dict = defaultdict(lambda: defaultdict(list))
    for i, ((domain, _, _), x, y, xt, yt) in enumerate(curves):
        rec = table[domain]
        t0 = time.perf_counter()
        try:
            fit = fit_learning_curve(x, y, bootstrap=0)
            pred = fit.predict(xt)
            rec["secs"].append(time.perf_counter() - t0)
            value = np.asarray(pred.value)
            rec["hits"] += ((pred.lower <= yt) & (yt <= pred.upper)).tolist()
            rec["width"] += ((pred.upper - pred.lower) / value).tolist()
            hit = _data_needed_hit(fit, x, y, xt, yt)
            if hit is not None:
                rec["need_hits"].append(hit)
        except (ValueError, RuntimeError, FloatingPointError):
            rec["fails"].append(1)
            value = np.full(len(xt), y[-1])
        rec["ours"].append(rmsle(value, yt))
        for name, baseline in BASELINES.items():
            try:
                v = np.asarray((m4[i] if name == "m4" else baseline(x, y))(xt), dtype=float)
                ok = np.all(np.isfinite(v)) and np.all(v > 0)
            except (ValueError, RuntimeError):
                ok = False
            rec[name].append(rmsle(v if ok else np.full(len(xt), y[-1]), yt))
    return table


def _pooled(table, domains, key):
    return [v for d in domains for v in table[d][key]]


def report(title, table, domains, label):
    """Print the per-domain and overall table, coverage and speed; return the overall means."""
    print(f"== {title}")
    print("domain  curves  " + "".join(f"{k:>14}" for k in ESTIMATORS) + "   (mean / median RMSLE)")
    groups = [(d, [d]) for d in domains] + ([("all", domains)] if len(domains) > 1 else [])
    for name, ds in groups:
        cells = "".join(f"{np.mean(_pooled(table, ds, k)):>7.4f}/{np.median(_pooled(table, ds, k)):.4f}"[-14:]
                        .rjust(14) for k in ESTIMATORS)
        print(f"{name:<7} {len(_pooled(table, ds, 'ours')):>6}  {cells}")
    for name, ds in groups:
        hits, width, need = (_pooled(table, ds, k) for k in ("hits", "width", "need_hits"))
        print(f"{name:<7} ours: 95% prediction interval holds {np.mean(hits):.3f} of {len(hits)} held-out points, "
              f"median relative width {np.median(width):.3f}; data_needed interval holds {np.mean(need):.3f} "
              f"of {len(need)} targets; failures {len(_pooled(table, ds, 'fails'))}; "
              f"median {np.median(_pooled(table, ds, 'secs')):.3f} s per fit + interval")
    hits = _pooled(table, domains, "hits")
    print(f"coverage95: {label}={np.mean(hits):.3f} (median relative width "
          f"{np.median(_pooled(table, domains, 'width')):.3f})")
    return {k: float(np.mean(_pooled(table, domains, k))) for k in ESTIMATORS}, \
        {k: float(np.median(_pooled(table, domains, k))) for k in ESTIMATORS}


def bench_lcdb(data: Path, every: int) -> None:
    curves = load_lcdb(data)[::every]
    t0 = time.perf_counter()
    m4 = reference_m4([(x, y) for _, x, y, _, _ in curves], np.ones(len(curves)), np.ones(len(curves)))
    table = evaluate(curves, m4)
    mean, median = report(f"lcdb_dev: {len(curves)} LCDB curves, RMSLE on the test rows "
                          f"({time.perf_counter() - t0:.0f} s)", table, ["lcdb"], "lcdb_dev")
    print("lcdb_dev mean RMSLE: " + " ".join(f"{k}={mean[k]:.4f}" for k in ("ours", "m2_last_half", "last_value")))
    print("lcdb_dev median RMSLE: " + " ".join(f"{k}={median[k]:.4f}" for k in ("ours", "m2_last_half", "last_value")))
    print()


def bench_alabdulmohsin(data: Path, every: int) -> None:
    curves = load_curves(data)[::every]
    t0 = time.perf_counter()
    settings = np.array([M4_SETTINGS[key[0]] for key, *_ in curves])
    m4 = reference_m4([(x, y) for _, x, y, _, _ in curves], settings[:, 0], settings[:, 1])
    m4_secs = time.perf_counter() - t0
    table = evaluate(curves, m4)
    domains = [d for d in ("IC", "NMT", "LM", "BB") if d in table]
    mean, _ = report(f"Alabdulmohsin et al. 2022 benchmark: {len(curves)} curves, RMSLE on held-out rows "
                     f"({time.perf_counter() - t0:.0f} s, of which M4 {m4_secs:.0f} s)", table, domains,
                     "alabdulmohsin")
    lm_nmt = [v for d in ("LM", "NMT") for v in table[d]["ours"]]
    print(f"ours vs NSL-PFN (published): IC {np.mean(table['IC']['ours']):.4f} (NSL-PFN 0.0280), "
          f"LM+NMT {np.mean(lm_nmt) if lm_nmt else float('nan'):.4f} (NSL-PFN 0.0194)")
    print("mean RMSLE: " + " ".join(f"{k}={mean[k]:.4f}" for k in ("ours", "m1", "m2", "m4")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared benchmark-data folder")
    parser.add_argument("--chinchilla-bootstrap", type=int, default=200)
    parser.add_argument("--every", type=int, default=1, help="score every n-th curve only (quick iterations)")
    parser.add_argument("--curves-only", action="store_true", help="skip the speed, BNSL and Chinchilla sections")
    args = parser.parse_args()
    if not (args.data / "alabdulmohsin2022_benchmark").is_dir():
        raise SystemExit(f"benchmark data not found under {args.data}; pass --data path/to/shared/benchmark-data")
    warnings.simplefilter("ignore", RuntimeWarning)
    if not args.curves_only:
        bench_speed()
        bench_bnsl(args.data)
        bench_chinchilla(args.data, args.chinchilla_bootstrap)
    bench_lcdb(args.data, args.every)
    bench_alabdulmohsin(args.data, args.every)


if __name__ == "__main__":
    main()
