"""Synthetic access patterns: which page an enclave thread touches next, as NumPy arrays.

A pattern describes a stream over ``n_pages`` pages (indices ``0 .. n_pages-1`` of the range
it targets; the program adds the range's first page). ``draw(rng, lo, hi, total)`` returns
the page indices of positions ``lo .. hi-1`` of a stream of ``total`` accesses, so a long
stream can be produced in bounded chunks (``stream``) without holding it all in memory, and
patterns whose shape depends on the position (sequential, growing, phases) stay exact across
chunk boundaries. Generation is vectorised: no Python loop per access.

Randomness comes only from the ``numpy.random.Generator`` passed in, so a seed fixes the
stream (the runner gives each thread its own ``default_rng([seed, enclave, thread])``).

The shapes are the ones the paging literature uses to explain the EPC cliff: a sequential
scan (LRU's worst case once it exceeds the EPC), uniform random (miss ratio = 1 - EPC/set),
Zipf (a skewed hot set that may fit although the footprint does not), hot/cold, phases and
a growing working set (heap growth, the EDMM use case).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

#: accesses produced per chunk by ``stream`` (bounds memory for long streams)
CHUNK = 1 << 16


class Pattern:
    """One access pattern over ``n_pages`` pages (subclasses define ``draw``)."""

    name = "abstract"
    n_pages: int

    def draw(self, rng: np.random.Generator, lo: int, hi: int, total: int) -> np.ndarray:
        raise NotImplementedError

    def _check(self) -> None:
        if not isinstance(self.n_pages, int) or self.n_pages < 1:
            raise ValueError(f"n_pages: must be a positive integer, got {self.n_pages!r}")


@dataclass
class Sequential(Pattern):
    """A scan: ``start, start+stride, ...`` wrapping around the range."""

    n_pages: int
    stride: int = 1
    start: int = 0
    name = "sequential"

    def __post_init__(self) -> None:
        self._check()
        if self.stride < 1:
            raise ValueError(f"stride: must be at least 1, got {self.stride}")

    def draw(self, rng, lo, hi, total):
        pos = np.arange(lo, hi, dtype=np.int64)
        return (self.start + pos * self.stride) % self.n_pages


@dataclass
class Uniform(Pattern):
    """Every page equally likely, independently per access."""

    n_pages: int
    name = "uniform"

    def __post_init__(self) -> None:
        self._check()

    def draw(self, rng, lo, hi, total):
        return rng.integers(0, self.n_pages, size=hi - lo, dtype=np.int64)


@dataclass
class Zipf(Pattern):
    """Bounded Zipf: the page of rank ``k`` (1-based) has probability ∝ ``k**-alpha``.

    Drawn by inverse transform on the cumulative weights (``searchsorted``), which, unlike
    ``Generator.zipf``, is bounded to ``n_pages`` and valid for any ``alpha > 0`` (including
    ``alpha <= 1``, common in cache traces). Rank ``k`` is page ``k-1`` unless ``scatter``,
    which places ranks on a seeded permutation so the hot pages are spread over the range.
    """

    n_pages: int
    alpha: float = 1.0
    scatter: bool = False
    seed: int = 0
    _cdf: np.ndarray = field(init=False, repr=False)
    _perm: np.ndarray | None = field(init=False, repr=False, default=None)
    name = "zipf"

    def __post_init__(self) -> None:
        self._check()
        if not self.alpha > 0:
            raise ValueError(f"alpha: must be positive, got {self.alpha}")
        w = np.arange(1, self.n_pages + 1, dtype=np.float64) ** -float(self.alpha)
        cdf = np.cumsum(w)
        self._cdf = cdf / cdf[-1]
        if self.scatter:
            self._perm = np.random.default_rng(self.seed).permutation(self.n_pages)

    def probabilities(self) -> np.ndarray:
        """The probability of each rank (rank 1 first)."""
        return np.diff(self._cdf, prepend=0.0)

    def draw(self, rng, lo, hi, total):
        ranks = np.searchsorted(self._cdf, rng.random(hi - lo), side="right")
        ranks = np.minimum(ranks, self.n_pages - 1).astype(np.int64)
        return ranks if self._perm is None else self._perm[ranks].astype(np.int64)


@dataclass
class HotCold(Pattern):
    """A hot set (the first ``hot_fraction`` of the pages) taking ``hot_probability`` of the
    accesses; the rest go uniformly to the cold pages."""

    n_pages: int
    hot_fraction: float = 0.1
    hot_probability: float = 0.9
    name = "hotcold"

    def __post_init__(self) -> None:
        self._check()
        if not 0 < self.hot_fraction <= 1:
            raise ValueError(f"hot_fraction: must be in (0, 1], got {self.hot_fraction}")
        if not 0 <= self.hot_probability <= 1:
            raise ValueError(f"hot_probability: must be in [0, 1], got {self.hot_probability}")

    @property
    def hot_pages(self) -> int:
        return max(1, min(self.n_pages, int(np.ceil(self.hot_fraction * self.n_pages))))

    def draw(self, rng, lo, hi, total):
        n = hi - lo
        hot = self.hot_pages
        cold = self.n_pages - hot
        is_hot = rng.random(n) < self.hot_probability
        if cold == 0:
            is_hot[:] = True
        u = rng.random(n)
        return np.where(
            is_hot, (u * hot).astype(np.int64), hot + (u * max(cold, 1)).astype(np.int64)
        )


@dataclass
class Growing(Pattern):
    """A working set that grows linearly from ``start_fraction`` of the range to all of it
    over the stream; each access is uniform over the pages reached so far."""

    n_pages: int
    start_fraction: float = 0.1
    name = "growing"

    def __post_init__(self) -> None:
        self._check()
        if not 0 < self.start_fraction <= 1:
            raise ValueError(f"start_fraction: must be in (0, 1], got {self.start_fraction}")

    def working_set(self, lo: int, hi: int, total: int) -> np.ndarray:
        """Pages reachable at positions ``lo .. hi-1`` (at least one)."""
        pos = np.arange(lo, hi, dtype=np.float64)
        first = self.start_fraction * self.n_pages
        ws = first + (self.n_pages - first) * (pos + 1) / max(total, 1)
        return np.clip(np.ceil(ws), 1, self.n_pages).astype(np.int64)

    def draw(self, rng, lo, hi, total):
        ws = self.working_set(lo, hi, total)
        return np.minimum((rng.random(hi - lo) * ws).astype(np.int64), ws - 1)


@dataclass
class Phases(Pattern):
    """Sub-patterns one after another: ``phases`` is a list of ``(pattern, count)``; the
    stream's length is the sum of the counts (``total`` is ignored)."""

    phases: list[tuple[Pattern, int]]
    name = "phases"

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError("phases: at least one phase is needed")
        for p, c in self.phases:
            if c < 0:
                raise ValueError(f"phases: a phase count must not be negative, got {c}")
            if not isinstance(p, Pattern):
                raise ValueError(f"phases: expected a Pattern, got {p!r}")

    @property
    def n_pages(self) -> int:  # type: ignore[override]
        return max(p.n_pages for p, _ in self.phases)

    @property
    def count(self) -> int:
        return sum(c for _, c in self.phases)

    def draw(self, rng, lo, hi, total):
        parts = []
        start = 0
        for p, c in self.phases:
            a, b = max(lo, start), min(hi, start + c)
            if a < b:
                parts.append(p.draw(rng, a - start, b - start, c))
            start += c
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def rw_mix(rng: np.random.Generator, n: int, write_fraction: float) -> np.ndarray:
    """Which of ``n`` accesses are writes: each independently with ``write_fraction``."""
    if not 0 <= write_fraction <= 1:
        raise ValueError(f"writes: a fraction in [0, 1] is expected, got {write_fraction}")
    if write_fraction == 0:
        return np.zeros(n, dtype=np.bool_)
    if write_fraction == 1:
        return np.ones(n, dtype=np.bool_)
    return rng.random(n) < write_fraction


def stream(
    pattern: Pattern,
    count: int,
    rng: np.random.Generator,
    write_fraction: float = 0.0,
    chunk: int = CHUNK,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``count`` accesses of ``pattern`` as ``(pages, writes)`` chunks of at most ``chunk``."""
    if count < 0:
        raise ValueError(f"count: must not be negative, got {count}")
    for lo in range(0, count, chunk):
        hi = min(count, lo + chunk)
        pages = pattern.draw(rng, lo, hi, count)
        yield pages, rw_mix(rng, hi - lo, write_fraction)


def generate(
    pattern: Pattern, count: int, rng: np.random.Generator, write_fraction: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """The whole stream at once (``stream`` concatenated)."""
    parts = list(stream(pattern, count, rng, write_fraction))
    if not parts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.bool_)
    return np.concatenate([p for p, _ in parts]), np.concatenate([w for _, w in parts])


PATTERNS: dict[str, type[Pattern]] = {
    cls.name: cls for cls in (Sequential, Uniform, Zipf, HotCold, Growing, Phases)
}
