"""Properties of the pure-numpy selection that a scaling sweep stands on: nested, exact, reproducible."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from helpers.selections import selections
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lightning_scaling.sampling import (
    KeyedPermutation,
    StreamSelector,
    _hash_keyed,
    _mix_int,
    hash64,
    select_indices,
    stratified_indices,
    subset_size,
)

TESTS = Path(__file__).resolve().parents[1]
SEEDS = st.integers(min_value=-(2**70), max_value=2**70)
# both constructions: sorted hashes (n <= 2**16) and the Feistel network (n > 2**16)
SIZES = st.one_of(st.integers(1, 3000), st.integers(2**16 - 5, 2**16 + 5000), st.integers(10**6, 10**12))
FAST = settings(max_examples=60, deadline=None)


# ------------------------------------------------------------------------------------ subset_size
def test_subset_size_documented_rounding():
    assert subset_size(10, fraction=0.25) == 3  # 2.5 rounds half up
    assert subset_size(10, fraction=0.35) == 4  # 3.5, read as the decimal 0.35, not 0.34999...
    assert subset_size(100, fraction=0.015) == 2  # 1.5 exactly as typed
    assert subset_size(7, fraction=0.01) == 1  # never empty
    assert subset_size(7, fraction=1.0) == subset_size(7, fraction=1) == 7
    assert subset_size(10**9, fraction=0.001) == 10**6
    assert subset_size(3, fraction=Fraction(1, 2)) == 2
    assert subset_size(10, size=np.int64(4)) == 4


@FAST
@given(n=st.integers(1, 10**12), f=st.floats(min_value=1e-9, max_value=1.0))
def test_subset_size_is_round_half_up_of_the_decimal_fraction(n, f):
    exact = Fraction(repr(f)) * n
    assert subset_size(n, fraction=f) == max(1, math.floor(exact + Fraction(1, 2)))


@FAST
@given(n=st.integers(1, 10**9), f1=st.floats(1e-6, 1.0), f2=st.floats(1e-6, 1.0))
def test_subset_size_is_monotone_in_fraction(n, f1, f2):
    lo, hi = sorted((f1, f2))
    assert 1 <= subset_size(n, fraction=lo) <= subset_size(n, fraction=hi) <= n


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fraction": 0.0}, ValueError, r"fraction must be in \(0, 1\], got 0"),
        ({"fraction": -0.5}, ValueError, "fraction must be in"),
        ({"fraction": 1.5}, ValueError, r"got 1.5; pass a fraction .* or size="),
        ({"fraction": float("nan")}, ValueError, "got nan"),
        ({"fraction": float("inf")}, ValueError, "got inf"),
        ({"fraction": "0.5"}, TypeError, "fraction must be a number"),
        ({"fraction": True}, TypeError, "fraction must be a number"),
        ({"size": 0}, ValueError, "size must be at least 1"),
        ({"size": 11}, ValueError, r"size=11 is larger than the dataset \(n=10"),
        ({"size": 2.5}, TypeError, "size must be an int.*fraction= instead"),
        ({}, ValueError, "exactly one of fraction="),
        ({"fraction": 0.5, "size": 3}, ValueError, "exactly one of fraction="),
    ],
)
def test_subset_size_rejects_bad_input_clearly(kwargs, error, match):
    with pytest.raises(error, match=match):
        subset_size(10, **kwargs)


def test_subset_size_rejects_empty_dataset():
    with pytest.raises(ValueError, match="dataset is empty"):
        subset_size(0, fraction=0.5)


# ---------------------------------------------------------------------------------- select_indices
@FAST
@given(n=SIZES, data=st.data(), seed=SEEDS)
def test_subsets_are_nested_exact_and_in_range(n, data, seed):
    cap = min(n, 3000)
    k1 = data.draw(st.integers(1, cap), label="k1")
    k2 = data.draw(st.integers(k1, cap), label="k2")
    small = select_indices(n, size=k1, seed=seed)
    large = select_indices(n, size=k2, seed=seed)
    assert len(small) == k1
    assert len(large) == k2
    assert len(np.unique(large)) == k2
    assert np.all(np.diff(large) > 0)  # sorted, so also unique
    assert large[0] >= 0
    assert large[-1] < n
    assert np.isin(small, large).all()


@FAST
@given(n=SIZES, seed=SEEDS, f1=st.floats(1e-4, 1.0), f2=st.floats(1e-4, 1.0))
def test_fraction_subsets_are_nested(n, seed, f1, f2):
    lo, hi = sorted((f1, f2))
    assume(subset_size(n, fraction=hi) <= 5000)
    assert np.isin(select_indices(n, fraction=lo, seed=seed), select_indices(n, fraction=hi, seed=seed)).all()


@FAST
@given(n=SIZES, seed=SEEDS, data=st.data())
def test_priority_order_prefixes_are_the_smaller_subsets(n, seed, data):
    k = data.draw(st.integers(1, min(n, 500)))
    j = data.draw(st.integers(1, k))
    order = select_indices(n, size=k, seed=seed, order="priority")
    assert np.array_equal(np.sort(order[:j]), select_indices(n, size=j, seed=seed))


@settings(max_examples=25, deadline=None)
@given(n=st.one_of(st.integers(1, 5000), st.integers(2**16 + 1, 2**16 + 70000)), seed=SEEDS)
def test_keyed_permutation_is_a_bijection_with_inverse(n, seed):
    perm = KeyedPermutation(n, seed)
    order = perm(np.arange(n))
    assert np.array_equal(np.sort(order), np.arange(n))
    assert np.array_equal(perm.rank(order), np.arange(n))


def test_same_arguments_give_the_same_subset_and_seeds_differ():
    a = select_indices(10**6, fraction=0.01, seed=7)
    assert np.array_equal(a, select_indices(10**6, fraction=0.01, seed=7))
    assert not np.array_equal(a, select_indices(10**6, fraction=0.01, seed=8))


def test_pinned_values_guard_reproducibility_across_versions():
    # a change here silently changes every published scaling curve: bump only with a changelog note
    assert select_indices(20, size=5, seed=0).tolist() == [4, 10, 11, 16, 17]
    assert select_indices(10**9, size=4, seed=0).tolist() == PINNED_1E9
    assert hash64(0, [0, 1]).tolist() == PINNED_HASH


PINNED_1E9 = [512417237, 582266869, 844637524, 872473978]
PINNED_HASH = [17129431457187820228, 7843325909160632932]


def test_subset_is_identical_in_other_processes_with_other_hash_seeds():
    # the child imports this checkout's package and the shared helper, whatever its working directory
    code = (
        "import sys; sys.path[:0] = sys.argv[1:3]; from helpers.selections import selections;"
        "print(hash('hash seed probe')); print('\\n'.join(selections()))"
    )
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        args = [sys.executable, "-c", code, str(TESTS), str(TESTS.parent)]
        proc = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
        outputs.append(proc.stdout.splitlines())
    assert outputs[0][0] != outputs[1][0]  # the hash seed really differed between the two processes
    assert outputs[0][1:] == outputs[1][1:] == selections()


@FAST
@given(n=SIZES, seed=SEEDS, data=st.data(), noise=st.integers(0, 2**32 - 1))
def test_selection_depends_only_on_its_arguments(n, seed, data, noise):
    # no hidden state: global RNGs, earlier calls and reused objects cannot change a subset
    k = data.draw(st.integers(1, min(n, 2000)), label="k")
    labels = np.arange(min(n, 3000)) % 3
    first = (
        select_indices(n, size=k, seed=seed),
        stratified_indices(labels, size=min(k, len(labels)), seed=seed),
        StreamSelector(fraction=0.3, seed=seed).keep(np.arange(2000)),
    )
    np.random.seed(noise % 2**32)  # noqa: NPY002
    random.seed(noise)
    np.random.permutation(10)  # noqa: NPY002
    select_indices(n, size=max(1, k // 2), seed=seed + 1)  # an unrelated call in between
    again = (
        select_indices(n, size=k, seed=seed),
        stratified_indices(labels, size=min(k, len(labels)), seed=seed),
        StreamSelector(fraction=0.3, seed=seed).keep(np.arange(2000)),
    )
    for a, b in zip(first, again):
        assert np.array_equal(a, b)
    perm = KeyedPermutation(n, seed)
    assert np.array_equal(np.sort(perm(np.arange(k))), first[0])


def test_scalar_and_vector_mixers_agree():
    xs = np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64)
    assert _hash_keyed(0, xs).tolist() == [_mix_int(int(x) * 0x9E3779B97F4A7C15) for x in xs]


def test_inclusion_is_uniform_over_seeds():
    counts = np.zeros(10)
    for seed in range(2000):
        counts[select_indices(10, size=3, seed=seed)] += 1
    assert np.allclose(counts / 2000, 0.3, atol=0.04)


def test_one_in_a_thousand_of_a_billion_is_small():
    # a user subsets datasets too large to permute: memory must follow the subset (8 MB of indices), not n
    # (8 GB); the time is measured side by side with a permutation by benchmarks/fraction_scale.py
    select_indices(10**9, size=10, seed=0)  # warm-up: imports, numpy dispatch
    tracemalloc.start()
    subset = select_indices(10**9, fraction=0.001, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(subset) == 10**6
    assert peak < 16 * subset.nbytes, f"peak {peak / 2**20:.0f} MiB"


def test_sampling_module_does_not_import_torch():
    code = "import sys, lightning_scaling.sampling; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------- stratified
LABELS = st.lists(st.integers(0, 5), min_size=1, max_size=300)


@FAST
@given(labels=LABELS, seed=SEEDS, data=st.data())
def test_stratified_subsets_are_nested_exact_and_proportional(labels, seed, data):
    labels = np.asarray(labels)
    n = len(labels)
    classes, counts = np.unique(labels, return_counts=True)
    k1 = data.draw(st.integers(1, n))
    k2 = data.draw(st.integers(k1, n))
    small = stratified_indices(labels, size=k1, seed=seed)
    large = stratified_indices(labels, size=k2, seed=seed)
    assert len(small) == k1
    assert len(large) == k2
    assert len(np.unique(large)) == k2
    assert np.isin(small, large).all()
    for k, subset in ((k1, small), (k2, large)):
        got = np.array([(labels[subset] == c).sum() for c in classes])
        bound = 0.5 + len(classes) * counts / (2 * n)
        assert np.all(np.abs(got - k * counts / n) <= bound + 1e-9)


@settings(max_examples=30, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=6), seed=SEEDS)
def test_stratified_class_counts_never_decrease_as_the_subset_grows(counts, seed):
    # largest-remainder apportionment fails this (Alabama paradox); the Webster queue cannot
    labels = np.repeat(np.arange(len(counts)), counts)
    order = stratified_indices(labels, size=len(labels), seed=seed, order="priority")
    per_class = np.cumsum(np.eye(len(counts), dtype=int)[labels[order]], axis=0)
    assert np.all(np.diff(per_class, axis=0) >= 0)
    for k in range(1, len(labels) + 1):
        assert np.array_equal(np.sort(order[:k]), stratified_indices(labels, size=k, seed=seed))


def test_stratified_keeps_balanced_classes_within_one_sample():
    labels = np.repeat(np.arange(4), 250)
    for fraction in (0.01, 0.013, 0.1, 0.37, 0.5):
        got = np.bincount(labels[stratified_indices(labels, fraction=fraction, seed=1)], minlength=4)
        assert np.abs(got - subset_size(1000, fraction=fraction) / 4).max() <= 1


def test_stratified_accepts_string_labels():
    labels = ["cat", "dog", "dog", "dog"] * 25
    subset = stratified_indices(labels, fraction=0.2, seed=0)
    assert [labels[i] for i in subset].count("cat") == 5


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros((4, 2)), "one label per sample"),
        ([], "dataset is empty"),
        (np.array([1, "a", None], dtype=object), "sortable"),
    ],
)
def test_stratified_rejects_bad_labels(labels, match):
    with pytest.raises((ValueError, TypeError), match=match):
        stratified_indices(labels, fraction=0.5)


# ---------------------------------------------------------------------------------------- streams
@FAST
@given(f1=st.floats(1e-3, 1.0), f2=st.floats(1e-3, 1.0), seed=SEEDS, stream=st.integers(0, 64))
def test_stream_thinning_is_nested_in_fraction(f1, f2, seed, stream):
    lo, hi = sorted((f1, f2))
    positions = np.arange(5000)
    small = StreamSelector(fraction=lo, seed=seed, stream=stream).keep(positions)
    large = StreamSelector(fraction=hi, seed=seed, stream=stream).keep(positions)
    assert not np.any(small & ~large)


def test_stream_thinning_keeps_about_the_fraction():
    kept = StreamSelector(fraction=0.1, seed=0).keep(np.arange(200_000)).sum()
    assert abs(kept - 20_000) < 5 * math.sqrt(200_000 * 0.1 * 0.9)
    assert StreamSelector(fraction=1.0).keep(np.arange(100)).all()


@FAST
@given(n=SIZES, seed=SEEDS, data=st.data())
def test_stream_size_selection_matches_map_style(n, seed, data):
    n = min(n, 200_000)
    k = data.draw(st.integers(1, min(n, 1000)))
    mask = StreamSelector(size=k, length=n, seed=seed).keep(np.arange(n + 10))
    assert np.array_equal(np.flatnonzero(mask), select_indices(n, size=k, seed=seed))


def test_stream_size_without_length_is_a_clear_error():
    with pytest.raises(ValueError, match=r"needs the stream's length.*fraction="):
        StreamSelector(size=10)
