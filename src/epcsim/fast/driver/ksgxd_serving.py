"""When ksgxd's compiled machine is served under SimPy between two calls (``stream_ksgxd.py``'s
``Session``; split from there by session ``tidy``, no code changed): the regime its batch
needs (``_served_regime``: checked before each served step, the session's enclaves the only
ones, built and alive, the model's options the driver's) and the cost choice
(``_worth_serving``: a served step costs ~4x a generator's, so the machine is served only
where a stream can take the session onto the core; out of either the machine stops at its
next K0 and its generator goes on, exactly). ``stream.py``, ``stream_group.py`` and
``Session`` ask them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from epcsim.fast.driver.core_regime import _built_or_building, flood_regime
from epcsim.kernel.policy import KernelLru

if TYPE_CHECKING:
    from epcsim.system import System


def _served_regime(system: System, encls: list[Any]) -> bool:
    """What ksgxd's machine needs to start a batch under SimPy (``ksgxd.py`` hands back
    ``KB_UNEXPECTED`` otherwise): the session's enclaves (``encls``, its slots) the only
    ones, each built (or being built on the core) and alive, and the model's options the
    driver's. (Until session ``onecpu2`` also nobody waiting for a CPU, nor ksgxd asked to
    reschedule: the machine skipped the loop's ``cond_resched()``; it asks for it now,
    ``resched.py``.) Cheap (per served step); a page of another owner on the LRU needs
    another enclave."""
    sgx = system.sgx
    cur = sgx.enclaves
    if len(cur) != len(encls) or any(a is not b for a, b in zip(cur.values(), encls, strict=True)):
        return False
    for encl in encls:
        if not _built_or_building(system, encl) or encl.dead:
            return False
    if not flood_regime(system) or type(sgx.lru) is not KernelLru:
        return False
    return sgx.ksgxd_task is not None


def _worth_serving(system: System) -> bool:
    """Whether ksgxd's machine should go on served (a cost choice, never a result: out of
    it the machine stops at K0 and its generator goes on, exactly): at most one task
    besides ksgxd holds a CPU. With more, no stream can take the session onto the core
    (``CoreStream._ready`` wants the thread alone with ksgxd), and a served step costs
    about 4x the generator's (take and fold around each request: 1.3 against 0.33 ms of
    host CPU per EWB with two started threads, session ``kmove2``). Nor while an ioctl
    runs on an enclave (``SGX_ENCL_IOCTL``, session ``eacc``): its thread is in the kernel,
    so no loop top comes before it returns - served through MODIFY_TYPES, row 3's trim
    took 0.37-0.40 s against the generator's 0.16-0.19 s. With ``fast_core="auto"``, also
    only while a stream the core accepted is live (``StreamCore.live``: without one
    nothing repays the served steps; session ``fdland``)."""
    core = system.sgx.stream_core
    if core.auto and not core.live:
        return False
    kt = system.sgx.ksgxd_task
    if getattr(core.session, "left", False):
        # a dissolved group's (``GroupSession.dissolve``: a stream of it ended): no stream
        # can take it - ``join`` and ``adopt`` refuse - so its machine goes back to its
        # generator at K0, and the threads left form a session of their own there (session
        # ``fixes``: served on, a group of two left one thread in Python beside ksgxd's
        # served machine for the rest of the run, 4,619 served steps, 27 core accesses)
        return False
    # a group session's threads (``stream_group``, session ``n6user``) are the session's:
    # its moves take them onto the core with ksgxd
    members = getattr(core.session, "members", ())
    if not members and _streams_for_a_group(core):
        return False  # a group session forms once ksgxd's generator is back (K0)
    if core.auto and not members and len(system.machine.running) == 1:
        # one CPU under "auto" (session ``demo6``): ksgxd awake is queued for the CPU or
        # on it whenever the thread is at a loop top, and the one-thread session's entry
        # declines a queued task (``CoreStream._ready``'s ``rq.waiting()``), so no stream
        # takes a served machine - the demo's one-CPU flip cells served ~700-1,250 steps a
        # cell during the build and adopted none (a spy on ``Session.adopt``), ~0.5 s of
        # row 5. Its generator goes on instead; a session still begins from ksgxd asleep.
        return False
    others = 0
    for r in system.machine.running:
        if r is not None and r is not kt and r not in members:
            others += 1
    if others > 1:
        return False
    if core.add_live:  # ADD_PAGES' loop on the core takes the session at its page top
        return True  # (one call builds the range: no short calls, unlike the trim below)
    if core.trim_live:  # MODIFY_TYPES' loop on the core takes the session at its page top
        # with "auto", only with direct reclaim: without it a call ends at the first page
        # whose ELDU finds no free page, so while ksgxd is awake the calls are short (the
        # demo's run without it: 47,836 calls for 47,872 pages) and each pays the session's
        # take and fold and ksgxd's served steps for ~1 page (BENCHMARKS.md, ``demo5``) -
        # unless the machine makes the runtime's next calls itself (``retry.py``, session
        # ``eagain``): the short calls then stay in one session on the core; or unless
        # the runtime makes no call after this one (``CoreStream.final``: the demo's flip
        # cells, the first call only; session ``demo6``) - no short calls follow it, and
        # its pages are the core's once ksgxd is (the "idle neighbour" cells: ~1,800 pages
        # a call, ksgxd freeing the neighbour's pages, 0.1-0.5 s a cell in Python)
        return (
            not core.auto
            or bool(system.sgx.direct_reclaim)
            or core.retry_live > 0
            or core.final_live > 0
        )
    return not any(e.ioctl_busy for e in system.sgx.enclaves.values())


def _streams_for_a_group(core: Any) -> bool:
    """Two live access streams or more on the core (``StreamCore.streams``): a one-thread
    session cannot take either onto the core while the other runs or sleeps on
    ``encl->lock`` (``CoreStream._ready``, ``to_core``), so ksgxd's machine is not served
    for it; back in its generator at K0, a group session takes them all
    (``stream_group``, session ``n6user``: with the FIFO mutex a contender sleeps, its CPU
    released, so the count of tasks on CPUs alone kept a build's session served for a
    whole run of three started threads, 13,689 served steps and 59 accesses on the core)."""
    n = 0
    for s in core.streams.values():
        if s.mode is None and s.trim is None:
            n += 1
            if n > 1:
                return True
    return False


__all__ = ["_served_regime", "_worth_serving"]
