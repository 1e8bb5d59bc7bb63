"""The enclave slots on the Python side: up to two enclaves for the compiled machines
(PATHS.md "Two enclaves in the regime", items 1, 2, 6 and 7; built by session ``twoencl2``).

Why: the machines take one ``KState`` per enclave slot (``kstate.N_SLOTS``, a numba
``UniTuple``) and take each batch page's enclave per page (``reclaim.py``: its slot in
``batch[r, k, 3]``, its ``KState``, its ``encl->lock`` as the core's mutex row = the slot).
Slot ``s`` is the ``s``-th enclave in ``sgx.enclaves`` order (creation). Here: the regime
with up to ``n`` enclaves (``check_slots``: ``bridge``'s one-enclave checks, per enclave),
slot 1's ``KState`` (``slot_state``: slot 0's global arrays, the enclave's own ``ke``,
page arrays, VA list and backing file), and a service for a slot (``serve_slots``: a
chunk's row or a record stored in *that* enclave's file; a VA row, a full buffer once).
The fold is ``bridge._fold`` per slot (its global part folds once: ``fold_kernel``'s
deltas are zeroed when folded).

What uses two slots today: ``bridge.run_ksgxd`` (ksgxd alone, the tests' direct entry:
``tests/fast/test_two_enclaves_core.py``). The user path's entries (``CoreStream``,
``run_pair``) still build ``kstate.slots(ks)`` of their one enclave: the thread's and the
ioctl machines' own slot, the served sessions and ``core_regime`` are what is left
(PATHS.md, "What is built").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from epcsim.engine.mutex import FifoMutex, LinuxMutex
from epcsim.engine.sched import CfsRunQueue, FifoRunQueue
from epcsim.fast.driver import kstate as K
from epcsim.fast.driver.bridge import (
    _big_arrays,
    _kernel_state,
    _refuse,
    _serve,
    take_ids,
    take_small,
)
from epcsim.fast.driver.unsealed import unsealed_of
from epcsim.kernel.epc import SGX_EPC_PAGE_ON_LRU
from epcsim.kernel.policy import KernelLru

if TYPE_CHECKING:
    from epcsim.system import System


def check_slots(system: System, n: int, fifo: bool = False) -> list[tuple[Any, Any]]:
    """The regime (module docstring) with up to ``n`` enclaves, each as the one enclave
    was (PATHS.md "Two enclaves in the regime", item 7): ``[(encl, SECS state)]`` in
    ``sgx.enclaves`` order, the enclave slots' order. ``fifo``: the model's FIFO run queue
    and mutex are taken too (``threads_bridge``, whose fold handles them)."""
    sgx = system.sgx
    m = system.machine
    if system.cpu.content_mode != "tag":
        _refuse("content_mode is not 'tag'")
    if type(sgx.lru) is not KernelLru:
        _refuse("the reclaim policy is not KernelLru")
    if not isinstance(m.rq, CfsRunQueue | FifoRunQueue if fifo else CfsRunQueue):
        _refuse("the scheduler is not CFS")
    if sgx.flood is not None:
        _refuse("the NOPAGE flood is on")
    if m.nr_cpus > 63:
        _refuse("more than 63 CPUs (the LP masks are int64: kstate.K_INSIDE)")
    if not 1 <= len(sgx.enclaves) <= n:
        _refuse(f"{len(sgx.enclaves)} enclaves, the driver models {n}")
    pairs = [(encl, _check_enclave(system, encl, fifo)) for encl in sgx.enclaves.values()]
    task = sgx.ksgxd_task
    if task is None or not sgx.ksgxd_sleeping or len(sgx.ksgxd_waitq._waiters) != 1:
        _refuse("ksgxd is not asleep on ksgxd_waitq")
    if m.env._queue:
        _refuse("the SimPy queue is not empty: another task would run")
    if any(r is not None for r in m.running) or m.spinning:
        _refuse("a task holds a CPU")
    if system.cpu.epcm.has_aside():
        _refuse("an EPCM entry's SECS or LINADDR is kept aside (the driver derives them)")
    epc = sgx.epc
    on_lru = (epc.flags & SGX_EPC_PAGE_ON_LRU) != 0
    if not np.all(np.isin(epc.owner_encl[on_lru], [e.id for e, _ in pairs])):
        _refuse("a page of another owner is on the LRU")
    return pairs


def _check_enclave(system: System, encl: Any, fifo: bool = False) -> Any:
    """``check_slots``' checks of one enclave; its SECS state."""
    if not encl.initialized or encl.dead or encl.secs_epc < 0:
        _refuse("the enclave is not initialized with its SECS resident")
    kind = LinuxMutex | FifoMutex if fifo else LinuxMutex
    if not isinstance(encl.lock, kind) or encl.lock.owner is not None or encl.lock._waiters:
        _refuse("encl->lock is not a free linux mutex")
    st = system.cpu.secs_state(encl.secs_epc)
    if st.inside or st.tracking or st.busy_tcs:
        _refuse("an LP is inside the enclave or an ETRACK epoch is open")
    b = encl.backing
    if b._width != 8 or b._eid != st.eid:
        _refuse("the backing store holds no 8-byte record of this enclave yet")
    return st


def kernel_slots(system: System, pairs: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """The machines' tuple of slots for ``pairs`` (``check_slots``'): one enclave's
    ``KState`` twice, or one per enclave sharing the global arrays."""
    e0, s0 = pairs[0]
    ks0 = _kernel_state(system, e0, s0)
    if len(pairs) == 1:
        return K.slots(ks0)
    e1, s1 = pairs[1]
    ks0.kc[K.K_SLOT_ID1] = e1.id
    return (ks0, slot_state(system, ks0, e1, s1))


def slot_state(system: System, ks0: Any, encl: Any, secs: Any) -> Any:
    """``encl``'s ``KState`` beside slot 0's ``ks0``: the same global arrays (the scalars
    ``kc``, the counters, the batches, the EPC, EPCM and VA versions, the keys), its own
    ``ke``, pages, VA list and backing file (``bridge._big_arrays``' enclave fields, the
    file's deferred-seal marks)."""
    ks = ks0._replace(
        ke=np.zeros(K.N_KC, np.int64),
        **unsealed_of(encl.backing, ks0.keys, encl.base, secs.eid).arrays(),
        **_big_arrays(system, encl),
    )
    take_ids(ks.ke, encl, secs)
    take_small(system, encl, secs, ks)
    return ks


def serve_slots(system: System, encls: list[Any], kt: Any, counts: dict[str, int]) -> Any:
    """``bridge._serve`` for the slots: a backing chunk's row or a record to store is the
    enclave of the slot the machine named (``K_SVC_E``); the rest (a VA page's row of
    versions, a full buffer) is global, served once, and a replaced global array is
    replaced in every slot. Returns the tuple to go on with."""
    kc = kt[0].kc
    if int(kc[K.K_SVC]) in (K.SVC_CHUNK, K.SVC_STORE):
        s = int(kc[K.K_SVC_E])
        ks = _serve(system, encls[s], kt[s], counts)
        if kt[1] is kt[0]:
            return K.slots(ks)
        return (ks, kt[1]) if s == 0 else (kt[0], ks)
    ks0 = _serve(system, encls[0], kt[0], counts)
    if kt[1] is kt[0]:
        return K.slots(ks0)
    return (ks0, kt[1]._replace(vp_epc=ks0.vp_epc, vp_row=ks0.vp_row))


__all__ = ["check_slots", "kernel_slots", "serve_slots", "slot_state"]
