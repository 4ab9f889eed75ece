"""Nested, deterministic subset selection in plain numpy (no torch, no Lightning).

Everything a data-scaling sweep needs to pick "the first ``k`` samples" of a dataset so that the
subsets at growing ``k`` are nested and identical on every process, machine and Python hash seed.

Construction
------------
*Counter-based hash.* :func:`hash64` maps ``(seed, i)`` to a 64-bit value with the splitmix64
finaliser applied to ``i * GOLDEN + key(seed)`` in wrapping ``uint64`` arithmetic. It is pure
integer arithmetic, so it is bit-for-bit identical on every platform and numpy version (it never
uses Python's salted :func:`hash`).

*Keyed permutation.* :class:`KeyedPermutation` is a bijection of ``range(n)``. For
``n <= 2**16`` it is simply ``range(n)`` sorted by :func:`hash64` (exactly uniform-looking and at
most ~1 MiB; a Feistel network over so few bits is measurably biased). Above that it is an 8-round
(unbalanced) Feistel network over the ``b``-bit domain ``[0, 2**b)``, ``2**b`` the next power of
two ``>= n`` (``b >= 2``), whose round function is :func:`hash64` keyed by ``(seed, round)``;
values that land in ``[n, 2**b)`` are mapped again until they fall back into ``[0, n)``
("cycle-walking"). Cycle-walking terminates because a permutation's cycle through a point of
``[0, n)`` returns to ``[0, n)``; since ``2**b < 2n`` a step stays outside with probability
``< 1/2`` (heuristically), so the expected number of steps is ``< 2``, and the loop is
vectorised over all points still outside (at most ``2**b - n + 1`` steps, checked).

*Nested subsets.* The subset of size ``k`` is ``{perm(0), ..., perm(k-1)}``, i.e. the ``k``
indices of smallest priority ``perm.rank(i)``. A smaller ``k`` is therefore always contained in
a larger one, the size is exact, and building it costs ``O(k)`` time and memory: the ``n``
indices are never permuted or even enumerated.

*Fraction -> size.* :func:`subset_size` rounds ``fraction * n`` half up (``floor(f*n + 1/2)``,
at least 1), computed exactly on the fraction's shortest decimal form (what you typed), so
``subset_size(100, fraction=0.015) == 2``.

*Stratified subsets.* :func:`stratified_indices` orders the members of each class by
:func:`hash64` and gives the ``r``-th member of class ``c`` (``n_c`` members) the priority
``(r + 1/2) / n_c`` (ties broken by the hash); the subset of size ``k`` is the ``k`` indices of
smallest priority. That is the Sainte-Lague/Webster divisor method read as a queue, which is
*house-monotone*: per-class counts never decrease as ``k`` grows, so stratified subsets are nested
(largest-remainder apportionment is not: it has the Alabama paradox). Every class gets
``k_c`` within ``1/2 + C * n_c / (2n)`` of its exact share ``k * n_c / n`` (``C`` classes), which
is within one sample for balanced classes, and the counts always sum to ``k`` exactly.

*Streams.* :class:`StreamSelector` decides per stream position ``j`` without materialising the
stream: with a fraction ``f`` it keeps ``j`` iff ``hash64(seed, j) < f * 2**64`` (Bernoulli
thinning, nested in ``f``); with an exact size ``k`` of a stream of known length ``n`` it keeps
``j`` iff ``KeyedPermutation(n, seed).rank(j) < k`` (the same subset :func:`select_indices`
returns).

Example:
    >>> from lightning_scaling.sampling import select_indices, subset_size
    >>> subset_size(1_000, fraction=0.01)
    10
    >>> small = select_indices(1_000, fraction=0.01, seed=0)
    >>> large = select_indices(1_000, fraction=0.1, seed=0)
    >>> len(small), len(large), set(small) <= set(large)
    (10, 100, True)
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

import numpy as np

__all__ = [
    "KeyedPermutation", "StreamSelector", "as_count", "as_fraction", "hash64", "labels_array", "seed64",
    "select_indices", "stratified_indices", "subset_size",
]

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: splitmix64's increment
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_U_GOLDEN, _U_M1, _U_M2 = np.uint64(_GOLDEN), np.uint64(_M1), np.uint64(_M2)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)

# domain-separation tags, so the same seed gives independent streams for each purpose
_TAG_HASH, _TAG_PERM, _TAG_STRATA, _TAG_STREAM = 1, 2, 3, 4
_ROUNDS = 8
_MAX_N = 1 << 62
# below this size a Feistel network over a few bits is measurably non-uniform, and sorting n
# hashes costs at most ~1 MiB, so small domains use the exact construction instead
_SMALL_N = 1 << 16
_CHUNK = 1 << 17
Order = Literal["sorted", "priority"]


# ----------------------------------------------------------------------------------------- hashing
def _mix_int(z: int) -> int:
    """splitmix64 finaliser on a Python int (scalar twin of :func:`_mix`, used to derive keys)."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return z ^ (z >> 31)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a ``uint64`` array (wrapping multiplication)."""
    z ^= z >> _S30
    z *= _U_M1
    z ^= z >> _S27
    z *= _U_M2
    z ^= z >> _S31
    return z


def seed64(seed: Any) -> int:
    """Check that ``seed`` is an int (any size, bools refused) and return it modulo ``2**64``.

    >>> seed64(-1) == 2**64 - 1
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__}); pass e.g. seed=0")
    return int(seed) & _MASK64


def _derive(seed: Any, *tags: int) -> int:
    """A 64-bit key from a seed and integer tags (purpose, round, stream id...)."""
    h = _mix_int(seed64(seed) + _GOLDEN)
    for tag in tags:
        h = _mix_int(h ^ _mix_int(tag * _GOLDEN + 0x632BE59BD9B4E019))
    return h


def _hash_keyed(key: int, x: np.ndarray) -> np.ndarray:
    z = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z *= _U_GOLDEN
        z += np.uint64(key)
        return _mix(z)


def hash64(seed: int, x: Any) -> np.ndarray:
    """Counter-based 64-bit hash of the non-negative integers ``x`` under ``seed``.

    Bit-for-bit reproducible everywhere (pure ``uint64`` arithmetic, no salted :func:`hash`).

    Example:
        >>> from lightning_scaling.sampling import hash64
        >>> h = hash64(0, [0, 1, 2])
        >>> h.dtype.name, len(set(h.tolist()))
        ('uint64', 3)
        >>> bool((hash64(0, [5]) == hash64(0, [5])).all()), bool((hash64(0, [5]) != hash64(1, [5])).all())
        (True, True)
    """
    arr = _as_positions(x, "x")
    return _hash_keyed(_derive(seed, _TAG_HASH), arr)


def _as_positions(x: Any, name: str, upper: int | None = None) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == np.uint64:
        pass
    elif arr.size == 0:
        arr = arr.astype(np.uint64)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    elif arr.min() < 0:
        raise ValueError(f"{name} must be non-negative, got {int(arr.min())}")
    if upper is not None and arr.size and int(arr.max()) >= upper:
        raise ValueError(f"{name} must lie in [0, {upper}), got {int(arr.max())}")
    return arr.reshape(-1)


# ------------------------------------------------------------------------------------------- sizes
def as_fraction(fraction: Any) -> Fraction:
    """Check ``fraction`` is a number in (0, 1] and return it exactly, a float read as its shortest decimal.

    >>> as_fraction(0.015)
    Fraction(3, 200)
    """
    hint = "pass a fraction of the training set in (0, 1], or size= for an absolute sample count"
    if isinstance(fraction, bool) or not isinstance(fraction, (numbers.Real, Decimal)):
        raise TypeError(f"fraction must be a number in (0, 1], got {fraction!r}; {hint}")
    if isinstance(fraction, (Fraction, numbers.Integral, Decimal)):
        if isinstance(fraction, Decimal) and not fraction.is_finite():
            raise ValueError(f"fraction must be in (0, 1], got {fraction}; {hint}")
        value = Fraction(fraction)
    else:
        as_float = float(fraction)
        if not math.isfinite(as_float):
            raise ValueError(f"fraction must be in (0, 1], got {as_float}; {hint}")
        # repr() is the shortest decimal that round-trips: 0.015 is read as 15/1000, not as the
        # binary float 0.01499999..., so half-way cases round the way the user expects.
        value = Fraction(float.__repr__(as_float))
    if not 0 < value <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {float(value):g}; {hint}")
    return value


def as_count(value: Any, name: str) -> int:
    """Check ``value`` is an integer (``operator.index``; bools refused) and return it; errors name ``name``.

    >>> as_count(np.int64(3), "size")
    3
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        hint = "; for a share of the data pass fraction= instead" if name == "size" else ""
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}){hint}") from None


def _check_n(n: Any) -> int:
    n = as_count(n, "n")
    if n < 1:
        raise ValueError(f"the dataset is empty (n={n}); a subset needs at least one sample")
    if n > _MAX_N:
        raise ValueError(f"n={n} is larger than the supported maximum 2**62")
    return n


def subset_size(n: int, fraction: float | Fraction | None = None, size: int | None = None) -> int:
    """Number of samples in the subset: ``size``, or ``fraction * n`` rounded half up, at least 1.

    Exactly one of ``fraction`` (in ``(0, 1]``) and ``size`` (in ``[1, n]``) must be given. The
    rounding is ``max(1, floor(fraction * n + 1/2))``, computed exactly with the fraction read
    as its shortest decimal form.

    Example:
        >>> from lightning_scaling.sampling import subset_size
        >>> subset_size(10, fraction=0.25), subset_size(10, fraction=0.35), subset_size(10, fraction=0.01)
        (3, 4, 1)
        >>> subset_size(100, fraction=0.015), subset_size(10, size=7)
        (2, 7)
    """
    n = _check_n(n)
    if (fraction is None) == (size is None):
        raise ValueError(
            "pass exactly one of fraction= (a share of the training set in (0, 1]) or size= "
            f"(an absolute sample count); got fraction={fraction!r}, size={size!r}"
        )
    if size is not None:
        k = as_count(size, "size")
        if k < 1:
            raise ValueError(f"size must be at least 1, got {k}")
        if k > n:
            raise ValueError(
                f"size={k} is larger than the dataset (n={n} samples); pass size <= {n}, or fraction= instead"
            )
        return k
    f = as_fraction(fraction)
    return max(1, (2 * f.numerator * n + f.denominator) // (2 * f.denominator))


# ------------------------------------------------------------------------------- keyed permutation
class KeyedPermutation:
    """A seeded pseudo-random bijection of ``range(n)`` evaluated pointwise in ``O(1)`` per point.

    ``perm(j)`` is the index at position ``j`` of the shuffled order and ``perm.rank(i)`` its
    inverse. Both are vectorised over arrays and never build the full permutation.

    Example:
        >>> from lightning_scaling.sampling import KeyedPermutation
        >>> perm = KeyedPermutation(10, seed=0)
        >>> order = perm(range(10))
        >>> sorted(order.tolist()) == list(range(10)), perm.rank(order).tolist() == list(range(10))
        (True, True)
    """

    def __init__(self, n: int, seed: int = 0, rounds: int = _ROUNDS) -> None:
        self.n = _check_n(n)
        self.seed = seed
        self.bits = max(2, (self.n - 1).bit_length())
        self._domain = 1 << self.bits
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        self._keys = [_derive(seed, _TAG_PERM, r) for r in range(rounds)]
        self._order: np.ndarray | None = None
        self._rank: np.ndarray | None = None
        if self.n <= _SMALL_N:
            keys = _hash_keyed(self._keys[0], np.arange(self.n, dtype=np.uint64))
            self._order = np.argsort(keys, kind="stable").astype(np.int64)
            self._rank = np.empty(self.n, dtype=np.int64)
            self._rank[self._order] = np.arange(self.n, dtype=np.int64)
        # the Feistel split alternates between (a, b) and (b, a) bits for the (left, right) halves
        a = self.bits // 2
        b = self.bits - a
        self._layout = [(a, b) if r % 2 == 0 else (b, a) for r in range(rounds)]

    def __repr__(self) -> str:
        return f"KeyedPermutation(n={self.n}, seed={self.seed})"

    def _round_fn(self, r: int, right: np.ndarray, out_bits: int) -> np.ndarray:
        z = _hash_keyed(self._keys[r], right)
        return z >> np.uint64(64 - out_bits)

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        for r, (a, b) in enumerate(self._layout):
            left = x >> np.uint64(b)
            right = x & np.uint64((1 << b) - 1)
            left ^= self._round_fn(r, right, a)
            x = (right << np.uint64(a)) | left
        return x

    def _decrypt(self, y: np.ndarray) -> np.ndarray:
        for r in reversed(range(len(self._layout))):
            a, b = self._layout[r]
            right = y >> np.uint64(a)
            left = (y & np.uint64((1 << a) - 1)) ^ self._round_fn(r, right, a)
            y = (left << np.uint64(b)) | right
        return y

    def _walk(self, x: np.ndarray, step: Any) -> np.ndarray:
        with np.errstate(over="ignore"):
            y = step(x)
            todo = np.flatnonzero(y >= np.uint64(self.n))
            budget = self._domain - self.n + 1
            while todo.size:
                budget -= 1
                if budget < 0:  # impossible for a bijection; guards against a future bug looping forever
                    raise RuntimeError("cycle-walking did not terminate; please report this as a bug")
                z = step(y[todo])
                y[todo] = z
                todo = todo[z >= np.uint64(self.n)]
        return y.astype(np.int64)

    def __call__(self, positions: Any) -> np.ndarray:
        """Indices at the given positions of the keyed order (``int64``)."""
        x = _as_positions(positions, "positions", self.n)
        if self._order is not None:
            return self._order[x.astype(np.int64)]
        return self._walk(x.astype(np.uint64), self._encrypt)

    def rank(self, indices: Any) -> np.ndarray:
        """Positions of the given indices in the keyed order (the inverse permutation, ``int64``)."""
        x = _as_positions(indices, "indices", self.n)
        if self._rank is not None:
            return self._rank[x.astype(np.int64)]
        return self._walk(x.astype(np.uint64), self._decrypt)

    def first(self, k: int) -> np.ndarray:
        """The first ``k`` indices of the keyed order, i.e. the nested subset of size ``k``."""
        k = as_count(k, "k")
        if not 0 <= k <= self.n:
            raise ValueError(f"k must be in [0, {self.n}], got {k}")
        if self._order is not None:
            return self._order[:k].copy()
        out = np.empty(k, dtype=np.int64)
        # chunks bound the round temporaries, so peak memory stays close to the output itself
        for start in range(0, k, _CHUNK):
            stop = min(start + _CHUNK, k)
            out[start:stop] = self._walk(np.arange(start, stop, dtype=np.uint64), self._encrypt)
        return out


# --------------------------------------------------------------------------------------- selection
def _finish(indices: np.ndarray, order: Order) -> np.ndarray:
    if order == "sorted":
        indices.sort()
        return indices
    if order == "priority":
        return indices
    raise ValueError(f"order must be 'sorted' or 'priority', got {order!r}")


def select_indices(
    n: int,
    fraction: float | Fraction | None = None,
    size: int | None = None,
    seed: int = 0,
    order: Order = "sorted",
) -> np.ndarray:
    """The nested pseudo-random subset of ``range(n)`` of :func:`subset_size` ``(n, fraction, size)``.

    With the same ``n`` and ``seed`` a smaller subset is always contained in a larger one. Time
    and memory are ``O(k)``. ``order="sorted"`` returns ascending indices (the dataset's own
    order); ``"priority"`` returns them in selection order, so ``result[:j]`` is the subset of
    size ``j``.

    Example:
        >>> from lightning_scaling.sampling import select_indices
        >>> select_indices(20, size=5, seed=0).tolist()
        [4, 10, 11, 16, 17]
        >>> select_indices(20, size=3, seed=0, order="priority").tolist()
        [17, 10, 4]
    """
    k = subset_size(n, fraction, size)
    if k == n and order == "sorted":
        return np.arange(n, dtype=np.int64)
    return _finish(KeyedPermutation(n, seed).first(k), order)


def labels_array(labels: Any, n: int | None = None) -> np.ndarray:
    """``labels`` as a 1-d array, checked to hold one label per sample (``n`` of them when given)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(
            f"stratify labels must be one label per sample (1-d), got shape {arr.shape}; "
            "for one-hot targets pass labels.argmax(1)"
        )
    if n is not None and len(arr) != n:
        raise ValueError(
            f"stratify labels have length {len(arr)} but the training set has {n} samples; "
            "pass exactly one label per training sample, in dataset order"
        )
    return arr


def stratified_indices(
    labels: Sequence[Any] | np.ndarray,
    fraction: float | Fraction | None = None,
    size: int | None = None,
    seed: int = 0,
    order: Order = "sorted",
) -> np.ndarray:
    """A nested subset that keeps class proportions: Webster apportionment read as a queue.

    ``labels[i]`` is the class of sample ``i`` (any sortable values). The subset has exactly
    :func:`subset_size` ``(len(labels), fraction, size)`` samples; class ``c`` gets ``k_c``
    samples with ``|k_c - k * n_c / n| <= 1/2 + C * n_c / (2 n)`` (``C`` classes), and ``k_c``
    never decreases as the subset grows, so subsets are nested. ``O(n log n)`` time, ``O(n)``
    memory (the labels already are).

    Example:
        >>> from lightning_scaling.sampling import stratified_indices
        >>> labels = [0] * 80 + [1] * 20
        >>> subset = stratified_indices(labels, fraction=0.1, seed=0)
        >>> len(subset), sum(labels[i] for i in subset)
        (10, 2)
    """
    arr = labels_array(labels)
    n = _check_n(len(arr))
    k = subset_size(n, fraction, size)
    try:
        _, codes, counts = np.unique(arr, return_inverse=True, return_counts=True)
    except TypeError as err:
        raise TypeError(f"stratify labels must be mutually comparable (sortable) values: {err}") from None
    codes = codes.reshape(-1)
    key = _hash_keyed(_derive(seed, _TAG_STRATA), np.arange(n, dtype=np.uint64))
    within = np.lexsort((key, codes))  # members of each class, in keyed order
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.int64)
    rank[within] = np.arange(n, dtype=np.int64) - np.repeat(starts, counts)
    # Webster/Sainte-Lague priorities (r + 1/2) / n_c; equal rationals give equal correctly-rounded
    # floats, so ties are exact and broken by the hash, deterministically
    priority = (2 * rank + 1) / (2.0 * counts[codes])
    chosen = np.lexsort((key, priority))[:k]
    return _finish(chosen.astype(np.int64), order)


# ----------------------------------------------------------------------------------------- streams
class StreamSelector:
    """Keep/drop decisions for positions of a stream, without materialising the stream.

    ``fraction=f``: position ``j`` is kept iff ``hash64 < f * 2**64`` (independent coin flips,
    nested in ``f``; the count is random, ``~ f * N``). ``size=k`` with ``length=n``: exactly the
    positions :func:`select_indices` ``(n, size=k, seed=seed)`` returns. ``stream`` keys separate
    sub-streams (e.g. one per DataLoader worker) independently; ``stream=0`` is the global stream.

    Example:
        >>> from lightning_scaling.sampling import StreamSelector, select_indices
        >>> import numpy as np
        >>> mask = StreamSelector(size=5, length=20, seed=0).keep(np.arange(20))
        >>> np.flatnonzero(mask).tolist() == select_indices(20, size=5, seed=0).tolist()
        True
        >>> half = StreamSelector(fraction=0.5).keep(np.arange(1000))
        >>> quarter = StreamSelector(fraction=0.25).keep(np.arange(1000))
        >>> bool((quarter <= half).all())
        True
    """

    def __init__(
        self,
        fraction: float | Fraction | None = None,
        size: int | None = None,
        length: int | None = None,
        seed: int = 0,
        stream: int = 0,
    ) -> None:
        if (fraction is None) == (size is None):
            raise ValueError("pass exactly one of fraction= or size= to StreamSelector")
        self.fraction = fraction
        self.size = size
        self.length = length
        self._perm: KeyedPermutation | None = None
        self._threshold: int | None = None
        if size is not None:
            if length is None:
                raise ValueError(
                    f"size={size} needs the stream's length to pick exactly {size} samples uniformly; "
                    "the dataset has no __len__, so pass fraction= (Bernoulli thinning) instead"
                )
            self.size = subset_size(length, size=size)
            self._perm = KeyedPermutation(length, seed)
        else:
            f = as_fraction(fraction)
            self._threshold = None if f == 1 else (f.numerator << 64) // f.denominator
            self._key = _derive(seed, _TAG_STREAM, as_count(stream, "stream"))

    def keep(self, positions: Any) -> np.ndarray:
        """Boolean mask: which of ``positions`` (non-negative ints) are in the subset."""
        pos = _as_positions(positions, "positions")
        if self._perm is not None:
            assert self.length is not None
            assert self.size is not None
            inside = pos < np.uint64(self.length)
            mask = np.zeros(pos.shape, dtype=bool)
            mask[inside] = self._perm.rank(pos[inside]) < self.size
            return mask
        if self._threshold is None:
            return np.ones(pos.shape, dtype=bool)
        return _hash_keyed(self._key, pos) < np.uint64(self._threshold)
