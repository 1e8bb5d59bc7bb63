"""SimPy left empty of the tasks ``to_core`` moved (``transfer_to_core.py``): their processes
closed - an own process (``Served.serve_own``) parked instead -, SimPy's queue cleared, and
what the closed generators' ``finally`` blocks touched cleared (the mutexes' trace tail,
OSQ, spinners and wait lists, the wait queues' sleepers): ``to_simpy`` rewrites every
field from the core.

Why a module of its own: split from ``transfer_to_core.py`` by session ``many64`` when it
passed 500 lines (no code changed but the name, ``_detach`` before); the reading of
SimPy's state is there, the leaving of it here.
"""

from __future__ import annotations

from epcsim.engine.mutex import LinuxMutex
from epcsim.fast.cosim.served import Served


def detach(sv: Served) -> None:
    """Leave SimPy empty of the moved tasks: close their processes (see the module
    docstring for what their ``finally`` blocks do), then clear what those touched."""
    traces = [None if mx.trace is None else len(mx.trace) for mx in sv.mutexes]
    for t, proc in enumerate(sv.procs):
        if proc is None or not proc.is_alive:
            continue
        own = sv.own[t]
        if own is None:
            proc._generator.close()
            continue
        # an own process (``Served.serve_own``) is parked, not closed: its serving generator
        # goes as a closed process's does, and the process waits on nothing until
        # ``to_simpy`` re-points it (its Python code around the machine lives on)
        own.close()
        target = proc._target
        if target is not None and target.callbacks is not None and proc._resume in target.callbacks:
            target.callbacks.remove(proc._resume)
        proc._target = None
    sv.env._queue.clear()
    for mx, n in zip(sv.mutexes, traces, strict=True):
        if n is not None:
            assert mx.trace is not None
            del mx.trace[n:]
        if isinstance(mx, LinuxMutex):
            mx._osq.clear()
            mx._spin_ev.clear()
        mx._waiters.clear()  # a FifoMutex's sleepers are the core's now
    sv.m.spinning.clear()
    for q in sv.queues:
        q._waiters.clear()


__all__ = ["detach"]
