"""How well the default fit recovers a known exponent, and how often its 95% interval holds it.

The extrapolation benchmark (``fit_extrapolation.py``) scores predictions on real curves, where the
true exponent is unknown. Users also read the exponent itself (against the paper's -0.07 .. -0.35),
so this benchmark draws curves whose exponent is known and compares, side by side on the same curves:

* ``default``: ``fit_learning_curve(sizes, errors)``, the law averaged over candidate starts;
* ``one start``: one fit from the start the default reports (``start=``, ``detect_small_data=False``),
  what the default did before it averaged starts.

The curves (seeded; a prior set a priori, not fitted to any data set): ``eps(m) = alpha m^beta + gamma``
with ``beta ~ U(-0.5, -0.07)``, the floor ``gamma ~ U(0, 0.5)`` times the power term at the largest
size, 8 to 19 geometric sizes over 2 to 4 decades, multiplicative noise of 2% (log-normal). A third of
the curves has no small-data region; a third has a sharp one (``min(best_guess, law)``); a third a
gradual one (``(best_guess^-4 + law^-4)^(-1/4)``), where ``best_guess`` is the law's value at a size in
the first third. The gradual knee bends the points after it too, which a power-law fit cannot tell
from the law: the exponent fitted there is biased even with the right start.

Prints, per kind of curve and for both estimators: the mean and median absolute and the mean signed
error of the exponent (a few nearly flat curves, whose exponent the data barely fix, weigh on the
mean), and the share of curves whose 95% bootstrap interval holds the true exponent, with its median
width. Run from the repository root (about 5 minutes on one core):

    python benchmarks/exponent_recovery.py [--curves 600] [--bootstrap 1000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from lightning_scaling.laws import fit_learning_curve

KINDS = ("none", "sharp", "gradual")


def draw(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray, float]:
    """One curve of ``kind``: ``(sizes, errors, true exponent)``."""
    beta = -rng.uniform(0.07, 0.5)
    m = np.geomspace(100, 100 * 10 ** rng.uniform(2, 4), int(rng.integers(8, 20)))
    alpha = float(m[-1]) ** -beta  # the power term is 1 at the largest size
    law = alpha * m**beta + rng.uniform(0, 0.5)
    best_guess = law[int(rng.integers(0, max(1, m.size // 3)))]
    if kind == "sharp":
        law = np.minimum(law, best_guess)
    elif kind == "gradual":
        law = (best_guess**-4 + law**-4) ** -0.25
    return m, law * np.exp(rng.normal(0, 0.02, m.size)), beta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--curves", type=int, default=600, help="curves in all, split evenly over the kinds")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates per fit")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    rows: dict[str, list[tuple[float, ...]]] = {k: [] for k in KINDS}
    for i in range(args.curves):
        kind = KINDS[i % len(KINDS)]
        m, eps, beta = draw(rng, kind)
        out = []
        default = fit_learning_curve(m, eps, bootstrap=args.bootstrap, seed=i)
        one = fit_learning_curve(m, eps, start=m[default.start_index], detect_small_data=False,
                                 bootstrap=args.bootstrap, seed=i)
        for fit in (default, one):
            lo, hi = fit.intervals["beta"]
            out += [fit.exponent - beta, float(lo <= beta <= hi), hi - lo]
        rows[kind].append(tuple(out))
    print(f"== exponent recovery: {args.curves} simulated curves, 2% noise, {args.bootstrap} bootstrap replicates "
          f"({time.perf_counter() - t0:.0f} s)")
    print(f"{'small-data region':18s} {'curves':>6s}  {'estimator':10s} {'mean |error|':>12s} {'median |error|':>14s} "
          f"{'mean signed':>11s} {'95% holds':>9s} {'median width':>12s}")
    summary = []
    for kind in KINDS:
        r = np.array(rows[kind])
        for j, name in enumerate(("default", "one start")):
            err, hold, width = r[:, 3 * j], r[:, 3 * j + 1], r[:, 3 * j + 2]
            print(f"{kind:18s} {len(r):6d}  {name:10s} {np.mean(np.abs(err)):12.4f} {np.median(np.abs(err)):14.4f} "
                  f"{np.mean(err):+11.4f} {np.mean(hold):9.2f} {np.median(width):12.3f}")
            if name == "default":
                summary.append(f"{kind}={np.mean(np.abs(err)):.4f}/{np.mean(hold):.2f}")
    print("exponent |error| / 95% coverage, default: " + " ".join(summary))


if __name__ == "__main__":
    main()
