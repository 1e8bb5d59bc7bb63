"""Compiled restatement of ``Timeline.record`` for a whole run of points.

The fast engine's batched paths (``epcsim.fast.eaug``, ``epcsim.fast.ioctl``) record one
free-page point per page. ``record_run`` applies ``Timeline.record`` to each point in order,
including ``Timeline._downsample`` when the series is full, over NumPy copies of the series:
the same rule, so the same points. Any change to ``epcsim.kernel.stats.Timeline.record`` or
``_downsample`` must be made here too (``tests/fast`` compares the two).
"""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def record_run(t, v, n, res, max_points, times, values):
    """``t``/``v`` hold ``n`` kept points (capacity ``>= max_points``); returns the new
    ``(n, res)`` after recording every ``(times[i], values[i])``."""
    for i in range(times.size):
        now = times[i]
        val = values[i]
        if n > 0 and now - t[n - 1] < res:
            v[n - 1] = val
            continue
        if n >= max_points:
            res *= 2
            m = 1
            for q in range(1, n):
                if t[q] - t[m - 1] < res:
                    v[m - 1] = v[q]
                else:
                    t[m] = t[q]
                    v[m] = v[q]
                    m += 1
            n = m
            if now - t[n - 1] < res:
                v[n - 1] = val
                continue
        t[n] = now
        v[n] = val
        n += 1
    return n, res


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
