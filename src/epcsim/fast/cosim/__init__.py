"""The compiled co-simulation core (issue 9, ``fast/DESIGN.md`` step 2, part 1).

SimPy's event queue and the engine primitives the kernel's paging paths use - ``Task.run``,
``LinuxMutex`` with optimistic spinning, ``WaitQueue``, CFS's wake-up onto an idle CPU,
process start and end - restated once each as numba functions over NumPy arrays, in
SimPy's exact event order. One module per concept, each next to its reference in
``epcsim/engine``: ``queue`` (``Environment``), ``task`` (``Task``, ``CfsRunQueue.wake``;
``run_over``: a ``run`` step's timeout popped in place after the pokes before it),
``runqueue`` (``CfsRunQueue``/``FifoRunQueue`` with tasks waiting for a CPU, session
``onecpu``), ``spin`` and ``mutex`` (``LinuxMutex``), ``waitqueue`` (``WaitQueue``), ``dispatch``
(``Environment.step`` + ``Process._resume``), ``state`` (the arrays, codes, ``new_state``).
``program`` is a small interpreter of task programs over the core, and ``simpy_program``
runs the same programs on ``engine.machine``: the differential tests compare the two.
``served`` runs compiled machines under SimPy one request at a time and ``transfer`` moves
the engine's pending state between SimPy and the core at any instant (``transfer_to_core``,
``transfer_to_simpy``) (the hand-back of
``PATHS.md``); ``program_served`` proves both on the task programs.

No user-visible path uses the core yet: ``System`` does not call it. ``DESIGN.md``, "What is
built", states the API the kernel state machines will use, the regime and the hand-backs.
"""

from __future__ import annotations

from pathlib import Path

from epcsim.fast.numba_cache import ENGINE, drop_stale, sources

# numba's cached code goes when a source it depends on changes (``fast/numba_cache.py``)
drop_stale(
    Path(__file__).parent,
    sources("fast/cosim", *ENGINE),
)
