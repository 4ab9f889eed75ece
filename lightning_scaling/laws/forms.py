r"""Functional forms of a learning curve :math:`\varepsilon(m)`.

Each form knows its parameters in the user's units (``params``), an unconstrained
parameterisation used by the optimiser (bounds become smooth maps, so the solver never
leaves the feasible set), its residuals in log-error space, a grid of starting points, its
prediction and its inverse (the size needed for a target error).

=====================  ================================================================  ==============
form                   equation                                                          parameters
=====================  ================================================================  ==============
:class:`PowerLaw`      :math:`\varepsilon = b\,m^{c}`  (M1)                               ``b, c``
:class:`Hestness`      :math:`\varepsilon = \alpha\,m^{\beta} + \gamma`  (M2, the paper)  ``alpha, beta, gamma``
:class:`M4`            :math:`(\varepsilon-\varepsilon_\infty)/(\varepsilon_0-\varepsilon)^{a} = b\,m^{c}`
                       (Alabdulmohsin et al. 2022)                                        ``e_inf, e_0, a, b, c``
:class:`BrokenPowerLaw`  :math:`\varepsilon = \gamma + b\,m^{-c_0}(1 + (m/d)^{1/f})^{-c_1 f}`
                       (one-break BNSL, Caballero et al. 2023)                             ``gamma, b, c0, c1, d, f``
=====================  ================================================================  ==============

Bounds: exponents keep the curve decreasing (``beta < 0``, ``c < 0``, ``0 <= c0 <= 3``, ``0 < c1 <= 50``) and the
floor lies in ``[0, min(error))``: no fitted curve can cross below an observed error's floor.
Sizes are divided by a reference size inside the optimiser for conditioning; every parameter
reported is in the user's units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FORMS", "M4", "BrokenPowerLaw", "Form", "Hestness", "PowerLaw", "get_form"]

_LOG_TINY = -700.0  # log of the smallest positive double, for log(0) without warnings


def _log(v: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, np.log(np.where(v > 0, v, 1.0)), np.where(v == 0, _LOG_TINY, np.nan))


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def _exp(t: np.ndarray) -> np.ndarray:
    return np.exp(np.clip(t, -700.0, 700.0))


#: starting values of a floor (gamma, e_inf) as fractions of the smallest error, shared by the forms
_FLOOR_FRACTIONS = (0.0, 0.3, 0.6, 0.85, 0.97)


@dataclass(frozen=True)
class Context:
    """What the parameterisation of one fit depends on: the data's scale."""

    x_ref: float
    y_min: float
    y_max: float

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray) -> Context:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        return cls(x_ref=float(np.exp(np.mean(np.log(x)))), y_min=float(np.nanmin(y)), y_max=float(np.nanmax(y)))


class Form:
    """A learning-curve family. Subclasses define the maps; instances are stateless."""

    name: str = ""
    params: tuple[str, ...] = ()
    exponent: str = ""
    floor: str = ""

    @property
    def n_params(self) -> int:
        return len(self.params)

    # -- parameterisation -------------------------------------------------------------------
    def natural(self, theta: np.ndarray, ctx: Context) -> np.ndarray:
        """Unconstrained ``theta (..., p)`` -> parameters in the user's units ``(..., p)``."""
        raise NotImplementedError

    def unconstrained(self, params: np.ndarray, ctx: Context) -> np.ndarray:
        """Inverse of :meth:`natural`."""
        raise NotImplementedError

    def starts(self, x: np.ndarray, y: np.ndarray, ctx: Context) -> np.ndarray:
        """Grid of starting points ``(S, p)`` in the unconstrained parameterisation."""
        raise NotImplementedError

    # -- model ------------------------------------------------------------------------------
    def predict(self, params: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Error at sizes ``x`` for parameters ``(..., p)``; returns ``(..., len(x))``."""
        raise NotImplementedError

    def log_predict(self, params: np.ndarray, x: np.ndarray) -> np.ndarray:
        return _log(self.predict(params, x))

    def residuals(self, theta: np.ndarray, x: np.ndarray, logy: np.ndarray, ctx: Context) -> np.ndarray:
        """Residuals in log-error space, ``log eps_hat(x) - log y``; shape ``(..., n)``."""
        return self.log_predict(self.natural(theta, ctx), x) - logy

    def size_for(self, params: np.ndarray, target: float) -> np.ndarray:
        """Smallest size at which the error reaches ``target``; ``inf`` where it never does."""
        return _bisect_size(self, params, target)

    def describe(self, params: np.ndarray) -> str:
        return ", ".join(f"{k}={v:.4g}" for k, v in zip(self.params, params))


def _bisect_size(form: Form, params: np.ndarray, target: float) -> np.ndarray:
    """Invert a decreasing curve by bisection in log size (forms without a closed-form inverse)."""
    params = np.atleast_2d(np.asarray(params, dtype=float))
    lo = np.full(len(params), -30.0)  # log size; e^-30 .. e^90 spans every dataset there is
    hi = np.full(len(params), 90.0)
    # sizes of shape (B, 1) pair each parameter row with its own size
    reachable = form.predict(params, np.exp(hi)[:, None])[:, 0] <= target
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        above = form.predict(params, np.exp(mid)[:, None])[:, 0] > target
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    return np.where(reachable, np.exp(hi), np.inf)


class PowerLaw(Form):
    r"""Pure power law :math:`\varepsilon = b\,m^{c}` with ``c < 0`` (estimator M1)."""

    name = "power_law"
    params = ("b", "c")
    exponent = "c"

    def natural(self, theta, ctx):
        t = np.asarray(theta, dtype=float)
        c = -_exp(t[..., 1])
        b = _exp(t[..., 0]) * ctx.x_ref ** (-c)
        return np.stack([b, c], axis=-1)

    def unconstrained(self, params, ctx):
        p = np.asarray(params, dtype=float)
        b, c = p[..., 0], p[..., 1]
        return np.stack([np.log(b) + c * np.log(ctx.x_ref), np.log(-c)], axis=-1)

    def residuals(self, theta, x, logy, ctx):
        t = np.asarray(theta, dtype=float)
        lx = np.log(x / ctx.x_ref)
        return t[..., 0:1] - _exp(t[..., 1:2]) * lx - logy

    def starts(self, x, y, ctx):
        lx = np.log(x / ctx.x_ref)
        ly = np.log(y)
        slope = np.polyfit(lx, ly, 1)[0] if len(x) > 1 else -0.3
        c = min(slope, -1e-3)
        return np.array([[np.mean(ly - c * lx), np.log(-c)]])

    def predict(self, params, x):
        p = np.asarray(params, dtype=float)
        x = np.asarray(x, dtype=float)
        return p[..., 0:1] * x ** p[..., 1:2]

    def log_predict(self, params, x):
        p = np.asarray(params, dtype=float)
        return np.log(p[..., 0:1]) + p[..., 1:2] * np.log(np.asarray(x, dtype=float))

    def size_for(self, params, target):
        p = np.atleast_2d(params)
        return (target / p[:, 0]) ** (1.0 / p[:, 1])


class Hestness(Form):
    r"""The paper's form :math:`\varepsilon = \alpha\,m^{\beta} + \gamma`, ``beta < 0``, ``0 <= gamma < min(y)``.

    Estimator M2 of Alabdulmohsin et al. 2022. ``gamma`` is the irreducible error.

    >>> import numpy as np
    >>> f = Hestness()
    >>> f.predict(np.array([2.0, -0.5, 0.1]), np.array([1.0, 100.0]))
    array([2.1, 0.3])
    >>> round(float(f.size_for(np.array([2.0, -0.5, 0.1]), 0.3)[0]), 6)
    100.0
    """

    name = "hestness"
    params = ("alpha", "beta", "gamma")
    exponent = "beta"
    floor = "gamma"

    def natural(self, theta, ctx):
        t = np.asarray(theta, dtype=float)
        beta = -_exp(t[..., 1])
        with np.errstate(over="ignore"):  # extreme bootstrap replicates give inf, which predictions drop
            alpha = _exp(t[..., 0]) * ctx.x_ref ** (-beta)
        gamma = ctx.y_min * _sigmoid(t[..., 2])
        return np.stack([alpha, beta, gamma], axis=-1)

    def unconstrained(self, params, ctx):
        p = np.asarray(params, dtype=float)
        alpha, beta, gamma = p[..., 0], p[..., 1], p[..., 2]
        return np.stack([np.log(alpha) + beta * np.log(ctx.x_ref), np.log(-beta), _logit(gamma / ctx.y_min)], -1)

    def residuals(self, theta, x, logy, ctx):
        t = np.asarray(theta, dtype=float)
        lx = np.log(x / ctx.x_ref)
        log_term = t[..., 0:1] - _exp(t[..., 1:2]) * lx
        log_gamma = np.log(ctx.y_min) + _log(_sigmoid(t[..., 2:3]))
        return np.logaddexp(log_term, log_gamma) - logy

    def starts(self, x, y, ctx):
        lx = np.log(x / ctx.x_ref)
        out = []
        for frac in _FLOOR_FRACTIONS:
            gamma = frac * ctx.y_min
            ly = np.log(np.maximum(y - gamma, 1e-12 * ctx.y_min))
            for beta in (-0.03, -0.1, -0.3, -0.6, -1.2):
                out.append([np.mean(ly - beta * lx), np.log(-beta), _logit(max(frac, 1e-4))])
        return np.array(out)

    def predict(self, params, x):
        p = np.asarray(params, dtype=float)
        return p[..., 0:1] * np.asarray(x, dtype=float) ** p[..., 1:2] + p[..., 2:3]

    def size_for(self, params, target):
        p = np.atleast_2d(params)
        alpha, beta, gamma = p[:, 0], p[:, 1], p[:, 2]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            m = ((target - gamma) / alpha) ** (1.0 / beta)
        return np.where(target > gamma, m, np.inf)


class M4(Form):
    r"""Estimator M4 of Alabdulmohsin et al. 2022.

    :math:`(\varepsilon-\varepsilon_\infty)/(\varepsilon_0-\varepsilon)^{a} = b\,m^{c}`.

    ``e_0`` is the small-data ("best guess") error, ``e_inf`` the floor. The objective is the paper's,
    least squares on the implicit equation in log space, but minimised globally from a grid of starts
    (the paper's code alternates least squares and Newton steps from ``e_0 = 1`` and stops at a local
    solution; ``benchmarks/fit_extrapolation.py`` runs that procedure as its M4 baseline). Predictions
    solve the equation by bisection. Bounds: ``0 <= e_inf <= min(y) - margin``, ``e_0 >= max(y) + margin``,
    ``a >= 0``, ``c < 0``, with a margin of ``1e-3`` of the largest error (the reference code uses an
    absolute ``1e-3``, the same for error rates): without it the implicit residual is singular at
    ``e_0 = max(y)`` and the fit collapses there. No upper bound on ``e_0``.
    """

    margin = 1e-3

    name = "m4"
    params = ("e_inf", "e_0", "a", "b", "c")
    exponent = "c"
    floor = "e_inf"

    def natural(self, theta, ctx):
        t = np.asarray(theta, dtype=float)
        lo, hi = self._bounds(ctx)
        e_inf = lo * _sigmoid(t[..., 0])
        e_0 = hi + _exp(t[..., 1])
        a = _exp(t[..., 2])
        c = -_exp(t[..., 4])
        b = _exp(t[..., 3]) * ctx.x_ref ** (-c)
        return np.stack([e_inf, e_0, a, b, c], axis=-1)

    def unconstrained(self, params, ctx):
        p = np.asarray(params, dtype=float)
        e_inf, e_0, a, b, c = (p[..., i] for i in range(5))
        lo, hi = self._bounds(ctx)
        return np.stack(
            [_logit(e_inf / lo), np.log(np.maximum(e_0 - hi, 1e-300)), np.log(np.maximum(a, 1e-12)),
             np.log(b) + c * np.log(ctx.x_ref), np.log(-c)],
            axis=-1,
        )

    def _bounds(self, ctx: Context) -> tuple[float, float]:
        m = self.margin * ctx.y_max
        return max(ctx.y_min - m, 0.5 * ctx.y_min), ctx.y_max + m

    def residuals(self, theta, x, logy, ctx):
        p = self.natural(theta, ctx)
        y = np.exp(logy)
        t = np.asarray(theta, dtype=float)
        lhs = _log(y - p[..., 0:1]) - p[..., 2:3] * _log(p[..., 1:2] - y)
        rhs = t[..., 3:4] - _exp(t[..., 4:5]) * np.log(x / ctx.x_ref)
        return lhs - rhs

    def starts(self, x, y, ctx):
        lx = np.log(x / ctx.x_ref)
        lo, hi = self._bounds(ctx)
        out = []
        for frac in (0.0, 0.5, 0.9):
            for gap in (0.05, 0.5):
                e0 = hi + gap * (ctx.y_max - ctx.y_min + 1e-3)
                for a in (0.05, 1.0):
                    ly = _log(y - frac * lo) - a * _log(e0 - y)
                    slope = np.polyfit(lx, ly, 1)[0] if len(x) > 1 else -0.3
                    c = min(slope, -1e-3)
                    out.append([_logit(max(frac, 1e-4)), np.log(e0 - hi), np.log(a),
                                np.mean(ly - c * lx), np.log(-c)])
        return np.array(out)

    def predict(self, params, x):
        p = np.asarray(params, dtype=float)
        x = np.asarray(x, dtype=float)
        e_inf, e_0, a, b, c = (p[..., i : i + 1] for i in range(5))
        log_f = np.log(b) + c * np.log(x)
        log_span = np.log(e_0 - e_inf)
        # the excess error w = eps - e_inf solves log w = log f + a log(span - w), whose left side minus
        # right side increases in w; w <= min(span, f span^a) bounds it, and bisecting log w keeps full
        # relative precision even when a fit sends e_0 far away (a -> 0, the M2 limit)
        hi = np.minimum(log_span, log_f + a * log_span)
        lo = hi - 250.0
        span = np.exp(log_span)
        for _ in range(90):
            mid = 0.5 * (lo + hi)
            w = np.exp(mid)
            g = mid - log_f - a * np.log(np.maximum(span - w, 1e-300))
            lo = np.where(g < 0, mid, lo)
            hi = np.where(g < 0, hi, mid)
        return e_inf + np.exp(0.5 * (lo + hi))

    def size_for(self, params, target):
        p = np.atleast_2d(params)
        e_inf, e_0, a, b, c = (p[:, i] for i in range(5))
        with np.errstate(divide="ignore", invalid="ignore"):
            g = (target - e_inf) / (e_0 - target) ** a
            m = (g / b) ** (1.0 / c)
        return np.where(target > e_inf, np.where(target >= e_0, 0.0, m), np.inf)


class BrokenPowerLaw(Form):
    r"""Smoothly broken power law with one break (BNSL, Caballero et al. 2023).

    :math:`\varepsilon = \gamma + b\,m^{-c_0}\,(1 + (m/d)^{1/f})^{-c_1 f}`: slope ``-c0`` before the
    break at ``d``, ``-(c0 + c1)`` after it, ``f`` its sharpness. With ``c0`` near zero this covers
    the paper's small-data region (error flat near best guess) and the power-law region in one curve.
    Bounds: ``0 <= c0 <= 3`` and ``0 < c1 <= 50`` (unbounded, a fit on a noisy tail can put the
    slope after the break at 1e8 and predict errors of 1e-12). The BNSL known-answer curve has
    ``c1 = 5.7``, but fitted on x <= 405, before its break, only the onset of the bend shows and the
    fit runs to the bound: 50 keeps that extrapolation within ~9% (RMSLE 0.087), 10 does not (1.4).
    """

    c0_max = 3.0
    c1_max = 50.0
    name = "broken_power_law"
    params = ("gamma", "b", "c0", "c1", "d", "f")
    exponent = "c1"
    floor = "gamma"

    def natural(self, theta, ctx):
        t = np.asarray(theta, dtype=float)
        gamma = ctx.y_min * _sigmoid(t[..., 0])
        c0 = self.c0_max * _sigmoid(t[..., 2])
        with np.errstate(over="ignore"):
            b = _exp(t[..., 1]) * ctx.x_ref**c0
        c1 = self.c1_max * _sigmoid(t[..., 3])
        return np.stack([gamma, b, c0, c1, _exp(t[..., 4]) * ctx.x_ref, _exp(t[..., 5])], -1)

    def unconstrained(self, params, ctx):
        p = np.asarray(params, dtype=float)
        gamma, b, c0, c1, d, f = (p[..., i] for i in range(6))
        return np.stack(
            [_logit(gamma / ctx.y_min), np.log(b) - c0 * np.log(ctx.x_ref), _logit(c0 / self.c0_max),
             _logit(c1 / self.c1_max), np.log(d / ctx.x_ref), np.log(f)],
            axis=-1,
        )

    @staticmethod
    def _log_term(lb, c0, c1, lnd, f, lx):
        # log of b m^-c0 (1 + (m/d)^(1/f))^(-c1 f), with softplus for the break; a vanishing f
        # (a sharp break) makes the argument inf, which logaddexp handles
        with np.errstate(over="ignore", divide="ignore"):
            return lb - c0 * lx - c1 * f * np.logaddexp(0.0, (lx - lnd) / f)

    def residuals(self, theta, x, logy, ctx):
        t = np.asarray(theta, dtype=float)
        lx = np.log(x / ctx.x_ref)
        e = [t[..., i : i + 1] for i in range(6)]
        term = self._log_term(e[1], self.c0_max * _sigmoid(e[2]), self.c1_max * _sigmoid(e[3]), e[4], _exp(e[5]), lx)
        return np.logaddexp(term, np.log(ctx.y_min) + _log(_sigmoid(e[0]))) - logy

    def starts(self, x, y, ctx):
        lx = np.log(x / ctx.x_ref)
        out = []
        span = lx[-1] - lx[0]
        # breaks inside the data and beyond it: a bend that has only begun at the largest size
        # still shows, and extrapolating it is what this form is for
        breaks = [float(np.quantile(lx, q)) for q in (0.25, 0.5, 0.75)] + [lx[-1] + 0.1 * span, lx[-1] + 0.4 * span]
        # the floor grid matters as much as the break grid: on the BNSL known-answer curve (floor at
        # 0.2 of the smallest error, break just past the data) only starts near the floor converge
        for frac in _FLOOR_FRACTIONS:
            for lnd in breaks:
                for c1 in (0.3, 1.0, 5.0):
                    for f in (0.05, 0.3, 1.0):
                        c0 = 0.02
                        ly = np.log(np.maximum(y - frac * ctx.y_min, 1e-12))
                        lb = np.mean(ly - self._log_term(0.0, c0, c1, lnd, f, lx))
                        out.append([_logit(max(frac, 1e-4)), lb, _logit(c0 / self.c0_max), _logit(c1 / self.c1_max),
                                    lnd, np.log(f)])
        return np.array(out)

    def predict(self, params, x):
        p = np.asarray(params, dtype=float)
        lx = np.log(np.asarray(x, dtype=float))
        gamma, b, c0, c1, d, f = (p[..., i : i + 1] for i in range(6))
        return gamma + np.exp(self._log_term(np.log(b), c0, c1, np.log(d), f, lx))


FORMS: dict[str, type[Form]] = {cls.name: cls for cls in (PowerLaw, Hestness, M4, BrokenPowerLaw)}


def get_form(form: str | Form) -> Form:
    """A form instance from its name (``"power_law"``, ``"hestness"``, ``"m4"``, ``"broken_power_law"``)."""
    if isinstance(form, Form):
        return form
    try:
        return FORMS[form]()
    except KeyError:
        raise ValueError(f"unknown form {form!r}; choose one of {sorted(FORMS)} or pass a Form instance") from None
