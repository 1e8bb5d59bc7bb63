"""A user step cut short by a wake-up preemption is not an EPCM refusal (found by session
``onecpu``, 2026-11-26).

``EnclaveThread.access_stream`` charges a run of resident accesses as one user step
(``Task.run_user``), which CFS's wake-up preemption interrupts at once (an AEX); the step
then returns the time it ran and the loop goes on after ERESUME. It used to take the
shortened count for ``resident_run``'s refusal (``k2 < k``) and end the stream with an SGX
#PF on a page the EPCM allows. Two CPUs, a thread on two hot resident pages, a scanning
thread that wakes ksgxd (no idle CPU: ksgxd preempts the hot thread's user step), on the
reference engine: the hot thread must run all its accesses without a #PF.
"""

from __future__ import annotations

import numpy as np

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.engine.machine import Task


def test_a_preempted_user_step_is_not_an_sgx_page_fault(monkeypatch) -> None:
    cut: list[int] = []
    run_user = Task.run_user

    def counting(self, ns, moved=None):  # type: ignore[no-untyped-def]
        ran = yield from run_user(self, ns, moved)
        if ran < ns:
            cut.append(ran)
        return ran

    monkeypatch.setattr(Task, "run_user", counting)
    system = epcsim.System(epc=64 * PAGE_SIZE, cpus=2, seed=0, engine="reference")
    encl = system.create_enclave(512 * PAGE_SIZE)
    assert encl.add_pages(0, 302 * PAGE_SIZE).ok and encl.init().ok
    hot = encl.start(np.tile(np.arange(300, 302), 6_000), name="hot")
    scan = encl.start(np.tile(np.arange(0, 290), 20), name="scan")
    system.run()
    assert cut, "no user step was preempted: the scenario no longer tests the case"
    assert hot.value.pf_error == 0 and hot.value.done == 12_000
    assert scan.value.pf_error == 0 and scan.value.done == 5_800
