"""Counters (``system.stats()``) and the sampled timeline used by reports.

Counter names are part of the product (``design.md``, "Counters"); keep them stable.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, fields

import numpy as np

from epcsim.fast.history import bin_latencies


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
#: ``append``), which the batched paths restate: below it the batch's fixed cost (a copy of
#: the whole series, NumPy on a handful of values) is larger (session ``slice``: a
#: ``run(until=)`` slice folds the core's served steps ~17 times, 1-4 points each)
_FEW = 16


class _Scratch:
    """The work arrays of ``Timeline.record_many``, kept across calls and grown as needed,
    one set for the process (a batch is recorded to its end before the next begins: no
    callback runs inside ``record_run``).

    Why (session ``callcost``, 2026-11-27): the compiled core folds a whole call's free-page
    points at once (row 1's call: ~13,800 points into a series of ~6,000), and four new
    arrays of that size each call (``np.zeros`` and ``ascontiguousarray`` of ~50-160 KiB,
    which the allocator maps fresh) cost ~0.15-0.4 ms of page faults and copies, about a
    sixth of the call's Python. Exact: the arrays only carry the series and the batch into
    ``record_run``, which reads the first ``n`` points and the batch and writes nothing
    else the result depends on; what it leaves behind is never read. Held: at most the
    largest batch plus series seen (row 1: ~0.3 MiB)."""

    def __init__(self) -> None:
        self.series = np.zeros((2, 0), np.int64)
        self.batch = np.zeros((2, 0), np.int64)

    def take(self, cap: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The series' two arrays (at least ``cap`` long) and the batch's (``k`` long)."""
        if self.series.shape[1] < cap:
            self.series = np.zeros((2, cap), np.int64)
        if self.batch.shape[1] < k:
            self.batch = np.zeros((2, k), np.int64)
        return self.series[0], self.series[1], self.batch[0, :k], self.batch[1, :k]


_scratch = _Scratch()


class Timeline:
    """Step series sampled on change, at most one point per ``resolution_ns``.

    Bounded (issue 9): once ``max_points`` are kept, the resolution doubles and the series is
    merged down to it (each interval keeps its last value), so a long run keeps at most
    ``max_points`` points at a resolution that grows with the run's length.
    """

    def __init__(self, resolution_ns: int = 1_000, max_points: int = 8192):
        if max_points < 4:
            raise ValueError(f"max_points: at least 4, got {max_points!r}")
        self.resolution_ns = resolution_ns
        self.max_points = max_points
        self.t = array("q")  # 8 bytes a value, not a Python int each
        self.v = array("q")

    def record(self, now: int, value: int) -> None:
        if self.t and now - self.t[-1] < self.resolution_ns:
            self.v[-1] = value  # keep the latest value of the interval
            return
        if len(self.t) >= self.max_points:
            self._downsample()
            if now - self.t[-1] < self.resolution_ns:
                self.v[-1] = value
                return
        self.t.append(int(now))
        self.v.append(int(value))

    def record_many(self, times: np.ndarray, values: np.ndarray) -> None:
        """``record(t, v)`` for each pair in order, at once: the fast engine's batched paths
        record one point per page (``epcsim.fast.history.record_run`` restates the rule)."""
        from epcsim.fast.history import record_run

        if times.size == 0:
            return
        if times.size <= _FEW:
            # a few points (the compiled core's served steps fold ~1-4 each, session
            # ``slice``): ``record`` itself, not a copy of the whole series each time
            for now, value in zip(times.tolist(), values.tolist(), strict=True):
                self.record(now, value)
            return
        n = len(self.t)
        k = int(times.size)
        if n and n + k <= self.max_points:
            # the batch cannot fill the series (at most ``k`` new points): its tail only
            self._append_many(times, values, n, k)
            return
        # the series and the batch in ``_scratch``'s arrays, not in new ones (module
        # docstring of ``_Scratch``: fresh arrays of this size cost page faults, ~0.2 ms a
        # call on row 1's ~13,800 points, session ``callcost``); record_run reads only
        # ``t[:n]``/``v[:n]`` and the batch, and writes below ``n + k + 1``
        t, v, bt, bv = _scratch.take(n + k + 1, k)
        t[:n] = np.frombuffer(self.t, dtype=np.int64)
        v[:n] = np.frombuffer(self.v, dtype=np.int64)
        bt[:] = times
        bv[:] = values
        n, res = record_run(t, v, n, self.resolution_ns, self.max_points, bt, bv)
        self.resolution_ns = int(res)
        # copied out once (``tobytes`` then ``array`` copied twice): the arrays' buffers
        self.t = array("q")
        self.t.frombytes(t[:n].data.cast("B"))
        self.v = array("q")
        self.v.frombytes(v[:n].data.cast("B"))

    def _append_many(self, times: np.ndarray, values: np.ndarray, n: int, k: int) -> None:
        """``record_many`` of a batch that cannot fill the series (``n + k <= max_points``),
        on its last point alone: until a downsample, ``record`` reads and writes only the
        last kept point, and the series fills (``n >= max_points``) exactly when the suffix
        from that point reaches ``max_points - (n - 1)`` points, which ``1 + k`` does not
        exceed; so ``record_run`` over the last point gives the series' tail, appended in
        place (the bound passed anyway, and the resolution checked: a defect guard). Why
        (session ``row1b``): the whole way copies the series (up to ``max_points``, 8,192)
        in and out at every fold. Row 1's call does not gain: its ~13,800 points fill the
        series (~4,600 kept after the warm-up call), which then downsamples - the whole way."""
        from epcsim.fast.history import record_run

        t, v, bt, bv = _scratch.take(k + 1, k)
        t[0] = self.t[n - 1]
        v[0] = self.v[n - 1]
        bt[:] = times
        bv[:] = values
        m, res = record_run(t, v, 1, self.resolution_ns, self.max_points - (n - 1), bt, bv)
        if res != self.resolution_ns:
            raise RuntimeError("Timeline.record_many: a batch that cannot fill it downsampled")
        self.v[n - 1] = int(v[0])
        if m > 1:
            self.t.frombytes(t[1:m].data.cast("B"))
            self.v.frombytes(v[1:m].data.cast("B"))

    def _downsample(self) -> None:
        """Double the resolution and merge: the rule ``record`` applies, replayed."""
        self.resolution_ns *= 2
        t, v = self.t, self.v
        nt, nv = array("q", [t[0]]), array("q", [v[0]])
        for ti, vi in zip(t[1:], v[1:], strict=True):
            if ti - nt[-1] < self.resolution_ns:
                nv[-1] = vi
            else:
                nt.append(ti)
                nv.append(vi)
        self.t, self.v = nt, nv

    @property
    def nbytes(self) -> int:
        """Host bytes of the series: what the two arrays hold allocated (``array`` grows by
        ~1/8 ahead, which ``len * 8`` missed: row 6 counted it, issue 9)."""
        return sys.getsizeof(self.t) + sys.getsizeof(self.v)


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
