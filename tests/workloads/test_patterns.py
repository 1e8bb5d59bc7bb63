"""Access patterns: deterministic, in range, and shaped as their names say."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.workloads.patterns import (
    Growing,
    HotCold,
    Phases,
    Sequential,
    Uniform,
    Zipf,
    generate,
    rw_mix,
    stream,
)


def _make(kind: str, n: int, seed: int):
    return {
        "sequential": lambda: Sequential(n, stride=3),
        "uniform": lambda: Uniform(n),
        "zipf": lambda: Zipf(n, alpha=0.9, scatter=True, seed=seed),
        "hotcold": lambda: HotCold(n, 0.2, 0.8),
        "growing": lambda: Growing(n, 0.25),
        "phases": lambda: Phases([(Sequential(n), 7), (Zipf(n, 1.3), 11), (Uniform(n), 5)]),
    }[kind]()


KINDS = ["sequential", "uniform", "zipf", "hotcold", "growing", "phases"]


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    n=st.integers(1, 5000),
    count=st.integers(0, 3000),
    seed=st.integers(0, 2**32 - 1),
    writes=st.floats(0, 1),
)
def test_streams_stay_in_range_and_are_deterministic(kind, n, count, seed, writes):
    pat = _make(kind, n, seed)
    if isinstance(pat, Phases):
        count = pat.count
    pages, w = generate(pat, count, np.random.default_rng(seed), writes)
    assert pages.dtype == np.int64 and w.dtype == np.bool_
    assert pages.shape == w.shape == (count,)
    if count:
        assert pages.min() >= 0 and pages.max() < n
    again, w2 = generate(_make(kind, n, seed), count, np.random.default_rng(seed), writes)
    assert np.array_equal(pages, again) and np.array_equal(w, w2)


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(["sequential", "growing", "phases"]), chunk=st.integers(1, 50))
def test_position_dependent_patterns_do_not_depend_on_chunking(kind, chunk):
    pat = _make(kind, 97, 1)
    count = pat.count if isinstance(pat, Phases) else 400
    whole, _ = generate(pat, count, np.random.default_rng(0))
    parts = [p for p, _ in stream(pat, count, np.random.default_rng(0), chunk=chunk)]
    assert max(p.size for p in parts) <= chunk
    if kind == "sequential":  # no randomness at all: identical whatever the chunks
        assert np.array_equal(np.concatenate(parts), whole)
    chunked = np.concatenate(parts)
    assert chunked.size == whole.size
    if kind == "growing":  # the working set at each position is exact across chunks
        assert np.all(chunked < pat.working_set(0, count, count))
    if kind == "phases":  # the sequential first phase is exact across chunks
        assert np.array_equal(chunked[:7], np.arange(7))


def test_sequential_wraps_with_stride():
    pages, _ = generate(Sequential(5, stride=2, start=1), 7, np.random.default_rng(0))
    assert pages.tolist() == [1, 3, 0, 2, 4, 1, 3]


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 10**6))
def test_uniform_covers_the_range(n, seed):
    pages, _ = generate(Uniform(n), 40 * n, np.random.default_rng(seed))
    assert np.unique(pages).size == n  # 40 draws per page: missing one has p < 1e-15


@settings(max_examples=20, deadline=None)
@given(alpha=st.floats(0.6, 2.0), n=st.integers(50, 2000), seed=st.integers(0, 10**6))
def test_zipf_rank_frequencies_decrease(alpha, n, seed):
    z = Zipf(n, alpha)
    pages, _ = generate(z, 60_000, np.random.default_rng(seed))
    freq = np.bincount(pages, minlength=n)
    # ranks in octaves [1], [2,3], [4..7], ...: the mean frequency per rank falls octave by
    # octave, wherever the law expects enough draws (>= 50 per rank) to tell them apart
    prob = z.probabilities()
    edges = [2**k for k in range(int(np.log2(n)) + 1)]
    octaves = [slice(a - 1, min(2 * a - 1, n)) for a in edges]
    means = [freq[o].mean() for o in octaves if 60_000 * prob[o].mean() >= 50]
    assert len(means) >= 2
    assert all(a > b for a, b in itertools.pairwise(means))
    assert freq.argmax() == 0
    # the empirical share of rank 1 matches the bounded Zipf law
    p1 = prob[0]
    assert abs(freq[0] / pages.size - p1) < 5 * np.sqrt(p1 * (1 - p1) / pages.size) + 1e-3


def test_zipf_scatter_is_a_permutation_of_ranks():
    a, _ = generate(Zipf(100, 1.2), 5000, np.random.default_rng(3))
    b, _ = generate(Zipf(100, 1.2, scatter=True, seed=9), 5000, np.random.default_rng(3))
    perm = np.random.default_rng(9).permutation(100)
    assert np.array_equal(perm[a], b)


@settings(max_examples=20, deadline=None)
@given(
    frac=st.floats(0.05, 0.9),
    prob=st.floats(0.0, 1.0),
    n=st.integers(20, 2000),
    seed=st.integers(0, 10**6),
)
def test_hotcold_sends_the_stated_share_to_the_hot_set(frac, prob, n, seed):
    pat = HotCold(n, frac, prob)
    pages, _ = generate(pat, 20_000, np.random.default_rng(seed))
    share = (pages < pat.hot_pages).mean()
    # hot draws always land hot; cold draws land cold unless there are no cold pages
    expected = prob if pat.hot_pages < n else 1.0
    assert abs(share - expected) < 0.03


def test_growing_working_set_grows():
    pat = Growing(1000, 0.1)
    pages, _ = generate(pat, 10_000, np.random.default_rng(0))
    ws = pat.working_set(0, 10_000, 10_000)
    assert np.all(pages < ws) and ws[0] >= 100 and ws[-1] == 1000
    assert np.all(np.diff(ws) >= 0)
    assert pages[:1000].max() < 200 and pages[-1000:].max() > 900


def test_phases_follow_each_other():
    pat = Phases([(Sequential(10), 10), (HotCold(10, 0.1, 1.0), 5)])
    pages, _ = generate(pat, pat.count, np.random.default_rng(0))
    assert pages.tolist() == list(range(10)) + [0] * 5


@pytest.mark.parametrize("frac", [0.0, 0.25, 1.0])
def test_rw_mix(frac):
    w = rw_mix(np.random.default_rng(1), 40_000, frac)
    assert abs(w.mean() - frac) < 0.01


@pytest.mark.parametrize(
    "make",
    [
        lambda: Sequential(0),
        lambda: Sequential(4, stride=0),
        lambda: Zipf(10, alpha=0),
        lambda: HotCold(10, 0, 0.5),
        lambda: HotCold(10, 0.5, 1.5),
        lambda: Growing(10, 0),
        lambda: Phases([]),
        lambda: rw_mix(np.random.default_rng(0), 3, 2.0),
    ],
)
def test_bad_parameters_raise_value_errors(make):
    with pytest.raises(ValueError):
        make()
