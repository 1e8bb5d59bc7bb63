"""The reference's generator code objects the moves recognise in SimPy's frames.

A move to the compiled core (``transfer_to_core``, ``transfer_rq_in``, ``transfer_lsleep``)
reads where each task's process is waiting by walking its generator chain
(``gi_yieldfrom``) and comparing each frame's ``gi_code`` by identity with these: which
``Task`` step (``engine/machine.py``) or which part of ``mutex_lock``'s slow path
(``engine/mutex.py``: ``LinuxMutex._lock_slow``, its sleeping half ``_sleeping``, the
spin, ``FifoMutex._lock_slow``) the task is in. Written once here so that the readers
agree on them (a renamed or split reference generator is one edit)."""

from __future__ import annotations

from epcsim.engine.machine import Task
from epcsim.engine.mutex import FifoMutex, LinuxMutex

ACQUIRE_CPU = Task.acquire_cpu.__code__
SCHEDULE = Task._schedule.__code__
RUN = Task.run.__code__
RUN_USER = Task.run_user.__code__
LOCK = Task.lock.__code__
SLEEP = Task.sleep.__code__
COND_RESCHED = Task.cond_resched.__code__
FIFO_LOCK_SLOW = FifoMutex._lock_slow.__code__
LINUX_LOCK_SLOW = LinuxMutex._lock_slow.__code__
SLEEPING = LinuxMutex._sleeping.__code__
SPIN = LinuxMutex._spin.__code__
