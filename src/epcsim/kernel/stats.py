"""Counters (``system.stats()``) and the sampled timeline used by reports.

Counter names are part of the product (``design.md``, "Counters"); keep them stable.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, fields

import numpy as np

from epcsim.fast.history import bin_latencies, downsample, record_run


@dataclass
class Counters:
    """Global event counts. Each is incremented where the modelled kernel code runs."""

    ewb: int = 0  # pages written back successfully (EWB returned 0)
    ewb_attempts: int = 0  # EWB leaves executed (every attempt, incl. SGX_NOT_TRACKED retries)
    eldu: int = 0  # ELDU leaves executed
    eldu_failed: int = 0  # ELDU that failed (MAC mismatch, replay, #GP)
    eaug: int = 0
    eremove: int = 0  # every EREMOVE, on every path (release, trim, error unwinding)
    ecreate: int = 0
    einit: int = 0  # EINIT executions, SGX_UNMASKED_EVENT retries included
    eblock: int = 0
    etrack: int = 0
    ipi: int = 0  # on_each_cpu_mask() rounds that reached at least one other CPU
    epa: int = 0
    eadd: int = 0
    eextend: int = 0
    emodpr: int = 0
    emodt: int = 0
    eaccept: int = 0
    emodpe: int = 0
    ksgxd_wakeups: int = 0  # ksgxd went from sleeping to running
    ksgxd_batches: int = 0
    ksgxd_pages_reclaimed: int = 0
    direct_reclaim_calls: int = 0  # sgx_reclaim_direct() calls that ran a batch
    direct_reclaim_pages: int = 0  # pages reclaimed by those batches and by alloc(reclaim)
    alloc_reclaim_batches: int = 0  # batches run inside sgx_alloc_epc_page(reclaim=true)
    alloc_ebusy: int = 0  # sgx_alloc_epc_page() returned -EBUSY
    alloc_enomem: int = 0
    reclaim_batches: int = 0
    reclaim_scanned: int = 0  # pages isolated from the LRU
    reclaim_young: int = 0  # skipped because the accessed bit was set
    page_faults: int = 0  # #PF taken by enclave threads on EPC pages
    fault_retries: int = 0  # VM_FAULT_NOPAGE retries caused by -EBUSY
    sigbus: int = 0
    enclave_accesses: int = 0
    secs_evictions: int = 0
    secs_reloads: int = 0
    va_pages: int = 0  # VA pages currently allocated
    ioctl_ebusy: int = 0  # ioctls refused because another one was in progress

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: batches up to this size go one by one through the single-point method (``record``,
#: ``append``), which the batched paths restate: below it the batch's fixed cost (a compiled
#: call's dispatch, NumPy on a handful of values) is larger (session ``slice``: a
#: ``run(until=)`` slice folds the core's served steps ~17 times, 1-4 points each)
_FEW = 16

#: a new ``Timeline``'s capacity (points); its arrays grow by doubling, up to
#: ``max_points + 1`` while that holds them (``Timeline._grow``)
_CAP0 = 64


class Timeline:
    """Step series sampled on change, at most one point per ``resolution_ns``.

    Bounded (issue 9): once ``max_points`` are kept, the resolution doubles and the series is
    merged down to it (each interval keeps its last value), so a long run keeps at most
    ``max_points`` points at a resolution that grows with the run's length.

    The series is two NumPy ``int64`` arrays with a length, written in place by ``record``
    (one point, Python) and ``record_many`` (a run, ``epcsim.fast.history.record_run``); the
    merge is ``history.downsample`` for both. ``t`` and ``v`` are snapshots of the kept
    points (``array('q')``), for the readers. Why (issue 9, session ``row1py``): the
    series was two ``array('q')``, so a batch had to be copied into NumPy arrays and the
    series out again; row 1's call folds its ~13,800 points once into a series of ~4,900
    that fills and downsamples, and those copies (~40 KiB each way, cold after the compiled
    drive) were ~70 of ``record_many``'s ~120 us.
    """

    def __init__(self, resolution_ns: int = 1_000, max_points: int = 8192):
        if max_points < 4:
            raise ValueError(f"max_points: at least 4, got {max_points!r}")
        self.resolution_ns = resolution_ns
        self.max_points = max_points
        self._t = np.zeros(_CAP0, np.int64)
        self._v = np.zeros(_CAP0, np.int64)
        self._n = 0  # points kept: ``_t[:_n]``, ``_v[:_n]``
        self._last = 0  # ``_t[_n - 1]`` as an int (``record``'s test reads it each point)

    def __len__(self) -> int:
        return self._n

    @property
    def t(self) -> array:
        """The kept points' times (a copy)."""
        return _snapshot(self._t, self._n)

    @property
    def v(self) -> array:
        """The kept points' values (a copy)."""
        return _snapshot(self._v, self._n)

    def record(self, now: int, value: int) -> None:
        n = self._n
        if n and now - self._last < self.resolution_ns:
            self._v[n - 1] = value  # keep the latest value of the interval
            return
        if n >= self._t.size:
            self._grow(n + 1)
        if n >= self.max_points:
            self._downsample()
            n = self._n
            if now - self._last < self.resolution_ns:
                self._v[n - 1] = value
                return
        self._t[n] = now
        self._v[n] = value
        self._n = n + 1
        self._last = int(now)

    def record_many(self, times: np.ndarray, values: np.ndarray) -> None:
        """``record(t, v)`` for each pair in order, at once: the fast engine's batched paths
        record one point per page (``epcsim.fast.history.record_run`` restates the rule).
        The pairs go into one ``(k, 2)`` array first (``record_pairs``' form)."""
        if times.size == 0:
            return
        if times.size <= _FEW:
            # a few points (the compiled core's served steps fold ~1-4 each, session
            # ``slice``): ``record`` itself, not a compiled call's dispatch each time
            for now, value in zip(times.tolist(), values.tolist(), strict=True):
                self.record(now, value)
            return
        pts = np.empty((times.size, 2), np.int64)
        pts[:, 0] = times
        pts[:, 1] = values
        self.record_pairs(pts)

    def record_pairs(self, pts: np.ndarray) -> None:
        """``record(t, v)`` for each ``(t, v)`` row of ``pts`` (``int64``, C-contiguous,
        ``(k, 2)``: the compiled core's buffer of points, ``KState.ft[:n]``) in order, into
        the series' arrays in place: no copy of the series nor of the batch."""
        k = int(pts.shape[0])
        if k <= _FEW:
            for now, value in pts.tolist():
                self.record(now, value)
            return
        i = 0
        while True:
            n, res, i = record_run(
                self._t, self._v, self._n, self.resolution_ns, self.max_points, pts, i
            )
            self._n = int(n)
            self.resolution_ns = int(res)
            if i >= k:
                break
            self._grow(self._n + 1)  # the arrays were full at row ``i``: on from there
        self._last = int(self._t[self._n - 1])

    def _grow(self, need: int) -> None:
        """Arrays of at least ``need`` points, the kept ones copied: twice the capacity, but
        not past ``max_points + 1`` when that is enough (a full series that downsamples
        needs no more - a merge that keeps every point, all ``resolution_ns`` apart, may)."""
        cap = max(2 * self._t.size, need)
        if need <= self.max_points + 1:
            cap = min(cap, self.max_points + 1)
        n = self._n
        for name in ("_t", "_v"):
            old = getattr(self, name)
            new = np.zeros(cap, np.int64)
            new[:n] = old[:n]
            setattr(self, name, new)

    def _downsample(self) -> None:
        """Double the resolution and merge (``history.downsample``, as ``record_run``)."""
        self.resolution_ns *= 2
        self._n = int(downsample(self._t, self._v, self._n, self.resolution_ns))
        self._last = int(self._t[self._n - 1])

    @property
    def nbytes(self) -> int:
        """Host bytes of the series: the two arrays as allocated (their capacity, which
        ``len * 8`` would miss: row 6 counts it, issue 9)."""
        return int(self._t.nbytes + self._v.nbytes)


def _snapshot(a: np.ndarray, n: int) -> array:
    """``a[:n]`` as an ``array('q')`` (a copy: plain ints to its readers, ``list`` of it
    for JSON)."""
    out = array("q")
    out.frombytes(a[:n].tobytes())
    return out


class LatencyHistogram:
    """Fault latencies (ns), bounded: the first ``exact`` samples are kept as they are, and
    every sample also goes into a log-scale histogram (``BINS_PER_OCTAVE`` bins per power of
    two, so a value read back from it is within 1.1% of the true one).

    ``mark()`` remembers a point; ``since(mark)`` gives the samples recorded after it - exact
    while they fit, else rebuilt from the histogram (each bin's geometric centre, repeated by
    its count: the same count and, within 1.1%, the same percentiles).
    """

    BINS_PER_OCTAVE = 32
    OCTAVES = 64

    def __init__(self, exact: int = 1 << 14):
        self.exact_cap = exact
        self._buf = array("q")
        self.count = 0
        self.counts = np.zeros(self.BINS_PER_OCTAVE * self.OCTAVES, dtype=np.int64)

    def __len__(self) -> int:
        return self.count

    def _bin(self, ns: int) -> int:
        if ns <= 1:
            return 0
        octave = ns.bit_length() - 1
        frac = (ns - (1 << octave)) * self.BINS_PER_OCTAVE >> octave
        return octave * self.BINS_PER_OCTAVE + frac

    def append(self, ns: int) -> None:
        self.counts[self._bin(int(ns))] += 1
        if self.count < self.exact_cap:
            self._buf.append(int(ns))
        self.count += 1

    def extend(self, ns: np.ndarray) -> None:
        """``append(v)`` for each value of ``ns`` in order, at once. Why: the compiled fault
        path (``fast/driver/thread_bridge``) hands its latencies back in batches of up to
        4,096, one per fault, and a Python ``append`` each cost ~1.4 us a fault there (issue 9,
        session ``pcost``). The bins are ``_bin``'s, counted by a compiled loop
        (``fast.history.bin_latencies``: NumPy's binning of the batch was still ~55 ns a
        fault, session ``fault2``); values from ``2**56`` up, whose fraction would not fit
        ``int64``, take ``append`` one by one."""
        v = np.asarray(ns, dtype=np.int64).ravel()
        if v.size == 0:
            return
        if v.size <= _FEW:  # a few (a served step's fault or two): ``append`` itself
            for one in v.tolist():
                self.append(one)
            return
        if int(v.max()) >= 1 << 56:
            for one in v.tolist():
                self.append(one)
            return
        bin_latencies(np.ascontiguousarray(v), self.counts, self.BINS_PER_OCTAVE)
        room = max(0, min(int(v.size), self.exact_cap - self.count))
        if room:
            self._buf.frombytes(v[:room].tobytes())
        self.count += int(v.size)

    def append_many(self, ns: int, k: int) -> None:
        """``append(ns)`` ``k`` times (the fast engine's batched faults all take as long)."""
        if k <= 0:
            return
        self.counts[self._bin(int(ns))] += k
        room = max(0, min(k, self.exact_cap - self.count))
        if room:
            self._buf.extend([int(ns)] * room)
        self.count += k

    def mark(self) -> tuple[int, np.ndarray]:
        return self.count, self.counts.copy()

    def since(self, mark: tuple[int, np.ndarray] | None = None) -> np.ndarray:
        start, base = mark if mark is not None else (0, np.zeros_like(self.counts))
        if self.count <= self.exact_cap:
            return np.frombuffer(self._buf, dtype=np.int64)[start:].copy()
        diff = self.counts - base
        idx = np.flatnonzero(diff)
        octave = idx // self.BINS_PER_OCTAVE
        frac = idx % self.BINS_PER_OCTAVE
        lo = np.ldexp(1.0 + frac / self.BINS_PER_OCTAVE, octave)
        hi = np.ldexp(1.0 + (frac + 1) / self.BINS_PER_OCTAVE, octave)
        centre = np.rint(np.sqrt(lo * hi)).astype(np.int64)
        centre[idx == 0] = 0
        return np.repeat(centre, diff[idx])

    @property
    def nbytes(self) -> int:
        """Host bytes: the exact samples as allocated (``FreeTimeline.nbytes``) and the bins."""
        return sys.getsizeof(self._buf) + self.counts.nbytes
