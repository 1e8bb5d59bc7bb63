"""Moving the engine's whole pending state between SimPy and the compiled core, both ways,
at any instant between two events (``PATHS.md``, "hand the queue back, not the tasks").

``transfer_to_core.to_core(served)``: SimPy -> core, at any instant inside the core's
regime, else nothing moves (False). ``transfer_to_simpy.to_simpy(served)``: core -> SimPy,
the mirror image. Session ``split`` moved the code, 608 lines, into the two modules and
kept this one as the place both directions are described; session ``split2`` pointed their
importers at the two modules and dropped its re-exports (it holds no code). Session
``spinfix`` moved the run queue's part of ``to_simpy`` into ``transfer_runqueue.py``.

SimPy internals used (simpy 4.1.x, pinned to it in ``pyproject.toml``; pure Python):
``Environment._queue`` (a heap of ``(time, priority, eid, event)``), ``_now``, ``_eid`` (an
``itertools.count``: read by taking a value and putting back a count from it), an Event's
``callbacks``/``_ok``/``_value``, and a ``Process`` built without its Initialize
(``_generator``, ``_target``, ``_resume``). Of CPython: a suspended generator's
``gi_yieldfrom`` chain and ``gi_frame.f_locals`` (a spinner's ``t0`` of ``_lock_slow``
and ``_spin``). Of the engine: ``LinuxMutex``'s and ``CfsRunQueue``'s underscored fields.
"""
