"""The free-page timeline's rule, compiled: ``downsample`` (the merge when the series is
full) and ``record_run`` (``Timeline.record`` for a whole run of points).

``Timeline`` (``epcsim.kernel.stats``) keeps its series in two NumPy arrays with a length
(session ``row1py``), and both of its ways of recording write them in place: ``record`` one
point in Python (the reference's per-page path), restating ``record_run``'s per-point test,
and ``record_many`` a run of points through ``record_run`` (the fast engine's batched paths,
``epcsim.fast.eaug``, ``epcsim.fast.ioctl``, and the compiled core's buffer of points,
``fast/driver/bridge._flush_timeline``). The merge is ``downsample`` for both: written
once. Any change to ``Timeline.record``'s test must be made in ``record_run`` too
(``tests/fast/test_batched.py`` compares both with the rule written out on lists).
"""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def downsample(t, v, n, res):
    """Merge the ``n`` kept points ``t``/``v`` down to resolution ``res`` (the doubled one)
    in place: a point less than ``res`` after the last kept one gives that one its value
    (each interval keeps its first time and its last value). Returns the new length."""
    m = 1
    for q in range(1, n):
        if t[q] - t[m - 1] < res:
            v[m - 1] = v[q]
        else:
            t[m] = t[q]
            v[m] = v[q]
            m += 1
    return m


@njit(cache=True, nogil=True)
def record_run(t, v, n, res, max_points, pts, i):
    """``Timeline.record`` of each ``(time, value)`` row of ``pts`` (a C-contiguous
    ``(k, 2)`` array: the compiled core's buffer, ``KState.ft``, as it is) from row ``i``
    on, in order, into the ``n`` points kept in ``t``/``v`` (capacity ``t.size``). Returns
    ``(n, res, j)``: ``j`` is ``k`` when every point is recorded, or the row that found the
    arrays full (``n == t.size``) before anything of it was done - the caller grows them and
    calls again from ``j``."""
    cap = t.size
    k = pts.shape[0]
    for j in range(i, k):
        now = pts[j, 0]
        val = pts[j, 1]
        if n > 0 and now - t[n - 1] < res:
            v[n - 1] = val
            continue
        if n >= cap:  # before the merge: a call again from j merges once, as ``record``
            return n, res, j
        if n >= max_points:
            res *= 2
            n = downsample(t, v, n, res)
            if now - t[n - 1] < res:
                v[n - 1] = val
                continue
        t[n] = now
        v[n] = val
        n += 1
    return n, res, k


@njit(cache=True, nogil=True)
def bin_latencies(v, counts, per_octave):
    """``LatencyHistogram._bin`` of each value of ``v`` (each ``< 2**56``), counted into
    ``counts``: the same bins as ``append`` (``octave = ns.bit_length() - 1``, then the
    fraction of the octave in ``per_octave`` steps; ``ns <= 1`` in bin 0). Why compiled:
    ``LatencyHistogram.extend``'s NumPy binning was ~55 ns a fault on row 2 at ~10% misses
    (issue 9, session ``fault2``), the largest Python part of a call on the compiled core.
    Any change to ``_bin`` must be made here too (``tests/kernel/test_latency_extend.py``
    compares ``extend`` with ``append``)."""
    for i in range(v.size):
        ns = v[i]
        if ns <= 1:
            counts[0] += 1
            continue
        # ns.bit_length() - 1 by halving the width (six tests, not one shift per bit: the
        # loop was ~17 a fault on row 1's latencies, session ``row1b``)
        octave = 0
        x = ns
        if x >= 1 << 32:
            x >>= 32
            octave += 32
        if x >= 1 << 16:
            x >>= 16
            octave += 16
        if x >= 1 << 8:
            x >>= 8
            octave += 8
        if x >= 1 << 4:
            x >>= 4
            octave += 4
        if x >= 1 << 2:
            x >>= 2
            octave += 2
        if x >= 1 << 1:
            octave += 1
        frac = ((ns - (1 << octave)) * per_octave) >> octave
        counts[octave * per_octave + frac] += 1
