"""Regression tests for the model defects of issue 10, item 1: each broke the model through
its public API (a crash, a leak, a wrong answer or a SIGBUS on a valid access)."""

import gc
import sys

import numpy as np
import pytest

import epcsim
from epcsim.arch import PAGE_SIZE

P = PAGE_SIZE


def _pair(epc="1M", cpus=2, seed=0, a_pages=400, b_pages=100):
    system = epcsim.System(epc=epc, cpus=cpus, seed=seed)
    a = system.create_enclave("4M", name="a")
    assert a.add_pages(0, a_pages * P).ok and a.init().ok
    b = system.create_enclave("4M", name="b")
    assert b.add_pages(0, b_pages * P).ok and b.init().ok
    return system, a, b


def _in_use_by(system, handle):
    e = handle.encl
    return e.resident_pages + (e.secs_epc >= 0) + len(e.va_pages)


@pytest.mark.parametrize("seed", range(4))
def test_second_close_is_ebadf_and_release_waits_for_ksgxd(seed):
    system, a, b = _pair(seed=seed)
    system.run(until="50us")  # ksgxd is mid-batch on a's pages: it holds krefs
    held = a.encl.refcount - 2  # minus the fd's and the mm's
    assert held > 0, "the scenario must catch ksgxd holding references"
    assert a.close() == 0
    assert a.close() == -epcsim.arch.EBADF  # changes nothing
    assert a.encl.refcount == held and not a.encl.dead
    system.run(until="20ms")  # ksgxd finishes its batch; the last put releases
    s = system.stats()
    assert a.encl.dead and "a" not in s["enclaves"] and a.id not in system.backing.files
    assert s["warnings"] == 0 and s["leaked_pages"] == 0
    assert s["epc_pages_free"] == s["epc_pages_total"] - _in_use_by(system, b)
    assert b.access_pages(np.arange(100)).ok


def test_a_closed_handle_refuses_work():
    _system, a, _ = _pair(a_pages=8)
    a.close()
    assert a.add_pages(16 * P, P).errno == "EBADF"
    assert a.init().errno == "EBADF"
    assert a.modify_types(0, P, "trim").errno == "EBADF"
    for call in (lambda: a.access(0), lambda: a.start([0]), lambda: a.mprotect(0, P, "r")):
        with pytest.raises(ValueError, match="enclave: a is closed"):
            call()


def test_close_while_a_thread_runs_frees_everything_when_it_ends():
    system, a, b = _pair(epc="1M", a_pages=300, b_pages=50)
    stream = np.tile(np.arange(300), 4)
    proc = a.start(stream)
    system.run(until="2ms")
    assert proc.is_alive
    assert a.close() == 0
    assert not a.encl.dead and "a" in system.stats()["enclaves"]  # the mm keeps it alive
    system.run()
    assert proc.value.ok and proc.value.done == stream.size  # the thread was not killed
    system.run(until="20ms")
    s = system.stats()
    assert a.encl.dead and "a" not in s["enclaves"]
    assert s["warnings"] == 0 and s["leaked_pages"] == 0  # no EREMOVE with an LP inside
    assert s["epc_pages_free"] == s["epc_pages_total"] - _in_use_by(system, b)


def test_init_after_the_secs_was_evicted_returns_the_kernels_answer():
    _system, a, b = _pair(epc="512K", a_pages=4, b_pages=200)
    assert b.access_pages(np.tile(np.arange(200), 2)).ok  # pushes all of a out, SECS too
    assert a.encl.secs_epc < 0
    r = a.init()
    assert r.errno == "EINVAL"  # already initialized (sgx_ioc_enclave_init's first check)


def _secs_race(dt):
    system = epcsim.System(epc="256K", cpus=4, seed=0)
    a = system.create_enclave("64K", name="a")  # implicit TCS: no TCS page
    assert a.add_pages(0, P).ok and a.init().ok
    b = system.create_enclave("1M", name="b")
    assert b.add_pages(0, 80 * P).ok and b.init().ok
    assert a.access(0).ok
    b.start(np.arange(80).repeat(3))
    if dt:
        system.run(until=dt)
    return system, a


def test_implicit_tcs_entry_racing_the_secs_eviction_never_sigbuses():
    # Find when ksgxd writes a's SECS back (with a's only page), then enter around then.
    system, a = _secs_race(0)
    t = 0
    while a.encl.secs_epc >= 0:
        system.run(until="1us")
        t += 1000
        assert t < 50_000_000
    raced = 0
    for dt in range(t - 2_000, t + 200, 100):
        system, a = _secs_race(dt)
        resident_at_entry = a.encl.secs_epc >= 0
        reloads = system.stats()["secs_reloads"]
        out = a.access(0)
        assert out.ok, (dt, out)
        raced += resident_at_entry and system.stats()["secs_reloads"] > reloads
    assert raced, "no entry met the SECS going out: the race window was missed"


def test_enclaves_with_the_same_name_are_all_listed():
    system = epcsim.System(epc="1M", cpus=1)
    handles = [system.create_enclave("64K", name="w") for _ in range(3)]
    names = [h.encl.name for h in handles]
    assert names == ["w", f"w#{handles[1].id}", f"w#{handles[2].id}"]
    assert set(system.stats()["enclaves"]) == set(names)


@pytest.mark.parametrize("via", ["api", "vdso"])
def test_eacceptcopy_loads_an_evicted_source(via):
    from epcsim.arch import SecinfoFlags, secinfo_flags
    from epcsim.user.insn import Eacceptcopy

    system = epcsim.System(epc="512K", cpus=2, seed=3, content_mode="full")
    a = system.create_enclave("1M", name="a")
    assert a.add_pages(0, 2 * P, "rw", data=b"source bytes".ljust(2 * P, b"\0")).ok
    assert a.init().ok
    dst = 64 * P
    assert a.access(dst).pf_error  # #PF -> EAUG: the page is PENDING
    b = system.create_enclave("1M", name="b")
    assert b.add_pages(0, 150 * P).ok and b.init().ok
    assert b.access_pages(np.tile(np.arange(150), 2)).ok
    assert a.encl.epc[0] < 0 and a.encl.present[0]  # the source is in backing
    eldu = system.stats()["eldu"]
    if via == "api":
        r = a.eacceptcopy(dst, 0, "rw")
        assert r.ok, r
    else:
        flags = secinfo_flags(epcsim.arch.PageType.REG, 3, int(SecinfoFlags.PENDING))
        t = a._main_thread()

        def op():
            return (yield from t.execute(Eacceptcopy(a.base + dst, a.base, flags)))

        ret, exc = system._call(t, op())
        assert exc is None and ret == 0
    assert system.stats()["eldu"] > eldu  # the fault handler loaded the source
    assert a.read(dst, 12) == b"source bytes"


@pytest.mark.parametrize("cost", ["fault_entry", "aex", "ewb", "lru_op"])
def test_a_zero_cost_is_refused_naming_it(cost):
    with pytest.raises(ValueError, match=f"costs.{cost}: must be at least 1 ns"):
        epcsim.System(costs={cost: 0})
    with pytest.raises(ValueError, match=f"costs.{cost}"):
        epcsim.System(costs={cost: 0.4})  # would truncate to 0
    with pytest.raises(ValueError, match=f"costs.{cost}: must be a finite number"):
        epcsim.System(costs={cost: float("nan")})


def test_a_zero_cost_in_a_scenario_is_an_input_error(tmp_path):
    from epcsim.scenario import ScenarioError, load_scenario

    p = tmp_path / "s.toml"
    p.write_text('seed = 1\n[machine]\nepc = "1M"\n[costs]\nfault_entry = 0\n')
    with pytest.raises(ScenarioError, match="costs.fault_entry.*at least 1 ns"):
        load_scenario(p)


def test_one_ns_costs_make_progress():
    from dataclasses import fields

    from epcsim.engine.costs import Costs

    ones = {f.name: 1 for f in fields(Costs) if f.name != "clock_ghz"}
    system = epcsim.System(epc="256K", cpus=2, seed=1, costs=ones)
    a = system.create_enclave("1M", name="a")
    assert a.add_pages(0, 100 * P).ok and a.init().ok
    procs = [a.start(np.arange(100).repeat(2)) for _ in range(2)]
    system.run()
    assert all(p.value.ok for p in procs)
    assert a.modify_types(0, 50 * P, "trim").ok


def test_dropping_a_system_with_a_live_thread_prints_nothing():
    seen = []
    hook, sys.unraisablehook = sys.unraisablehook, seen.append

    def build():
        system, a, _ = _pair(epc="2M", a_pages=100, b_pages=4)
        procs = [a.start(np.tile(np.arange(100), 1000)) for _ in range(2)]
        system.run(until="1ms")
        assert all(p.is_alive for p in procs)
        assert any(t.entered and not t.aexed for t in a.mm.tasks if hasattr(t, "entered"))

    try:
        build()
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert not seen, [str(u.exc_value) for u in seen]


def test_run_for_zero_time_runs_nothing():
    system = epcsim.System(epc="1M", cpus=1)
    system.run(until=0)
    assert system.now == 0


def test_threads_never_enter_through_a_tcs_the_enclave_has_not_accepted():
    """Found by the stateful long mode: MODIFY_TYPES(TCS) on a plain page, then a plain read.
    The new TCS is MODIFIED until the enclave EACCEPTs it, so EENTER through it fails; the
    helper threads must keep using a TCS they can enter (here the implicit one), not report a
    SIGBUS for a valid access. Once accepted, the page is a TCS new threads bind to."""
    system = epcsim.System(epc=128 * P, cpus=1, direct_reclaim=False, content_mode="full")
    h = system.create_enclave(64 * P)
    data = b"".join(bytes([i + 1]) * P for i in range(2))
    assert h.add_pages(0, 2 * P, "rw", data=data).ok and h.init().ok
    assert h.modify_types(0, P, "tcs").ok
    assert h.tcs_pages() == [0] and h.usable_tcs_pages() == []
    assert h.read(P, 4) == b"\x02" * 4
    out = h.access(48 * P)  # EAUG: PENDING until EACCEPT, a #PF with the SGX bit
    assert out.pf_error and not out.sigbus, out
    assert h.eaccept(0, "tcs", "", modified=True).ok
    assert h.usable_tcs_pages() == [0]
    assert h.new_thread().tcs_index == 0


def test_an_evicted_unaccepted_tcs_is_not_used_either():
    """The same with the new TCS page written back (found by the long mode after the fix
    above): its MODIFIED state is in the PCMD that ELDU restores, so it is still unusable."""
    system = epcsim.System(epc=128 * P, cpus=2, direct_reclaim=False, content_mode="full")
    a = system.create_enclave(64 * P, name="a")
    data = b"".join(bytes([i + 1]) * P for i in range(2))
    assert a.add_pages(0, 2 * P, "rw", data=data).ok and a.init().ok
    assert a.modify_types(0, P, "tcs").ok
    b = system.create_enclave(256 * P, name="b")
    assert b.add_pages(0, 200 * P).ok  # pushes a's pages out to backing
    system.run(until="5ms")
    assert a.encl.epc[0] < 0, "the scenario must evict the new TCS page"
    assert a.usable_tcs_pages() == []
    assert a.read(P, 4) == b"\x02" * 4
