"""The kernel layer shaped like the driver (issue 8, items 5 and 7): one wrapper per ENCLS leaf
that charges, counts and WARNs; ``sgx_ioctl`` owning SGX_ENCL_IOCTL; ``signal_pending()`` on
tasks; and the small divergences from the 6.x sources, each checked against the behaviour the
kernel code has."""

import errno

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import epcsim
from epcsim.arch import PAGE_SIZE, PCMDS_PER_PAGE, SgxReturn, encls_fault
from epcsim.engine.machine import Task
from epcsim.isa import Sigstruct
from epcsim.isa.secs import SUPPORTED_XFRM
from epcsim.kernel.reclaim import send_ipi, sgx_reclaim_pages
from epcsim.user.enclave_ioctl import MODEL_SIGNER_MODULUS


def _built(system, size="64K", pages=8):
    encl = system.create_enclave(size)
    assert encl.add_pages(0, PAGE_SIZE, page_type="tcs", measure=True).ok
    assert encl.add_pages(PAGE_SIZE, (pages - 1) * PAGE_SIZE, "rw", measure=True).ok
    assert encl.init().ok
    return encl


def _evict_all(system, encl):
    """Run reclaim batches on a kernel thread until the enclave has no resident page."""
    sgx = system.sgx
    k = Task(system.machine, "reclaimer", kernel=True)
    while encl.resident_pages and len(sgx.lru):
        system._call(k, sgx_reclaim_pages(sgx, k))


# -- item 7: the ENCLS wrappers count and charge every leaf on every path ----------------------
def test_every_build_leaf_is_counted_and_every_eremove_charged():
    system = epcsim.System(epc="1M", cpus=2, seed=1)
    encl = _built(system, pages=8)
    st = system.stats()
    assert (st["ecreate"], st["einit"], st["eadd"], st["epa"]) == (1, 1, 8, 1)
    assert st["eextend"] == 8 * 16 and st["eremove"] == 0
    t0 = system.now
    encl.close()  # sgx_encl_release: 8 pages, the SECS and the VA page, each EREMOVEd
    assert system.stats()["eremove"] == 10
    assert system.now - t0 >= 10 * system.costs.eremove  # charged to the closing process
    assert system.stats()["epc_pages_free"] == system.stats()["epc_pages_total"]


def test_eremove_failure_is_warned_and_leaks_the_page(monkeypatch):
    system = epcsim.System(epc="1M", cpus=2, seed=1)
    encl = _built(system, pages=4)
    real = system.cpu.eremove
    victim = int(encl.encl.epc[2])
    monkeypatch.setattr(
        system.cpu, "eremove", lambda p: SgxReturn.CHILD_PRESENT if p == victim else real(p)
    )
    encl.close()
    st = system.stats()
    # the page stays valid in the EPCM, so the SECS still has a child: its EREMOVE fails
    # with SGX_CHILD_PRESENT and it leaks too - two WARNs, two pages lost
    assert st["leaked_pages"] == 2 and st["warnings"] == 2
    assert all(w.startswith("EREMOVE") for w in system.sgx.warnings)
    assert "CHILD_PRESENT" in system.sgx.warnings[1]
    assert st["epc_pages_free"] == st["epc_pages_total"] - 2


def test_einit_retries_unmasked_events_and_gives_up_on_a_signal(monkeypatch):
    """sgx_encl_init: 20 tries per round, a 20 ms interruptible sleep between rounds, and
    -ERESTARTSYS when a signal is pending after the sleep."""
    system = epcsim.System(epc="1M", cpus=2, seed=1)
    encl = system.create_enclave("64K")
    assert encl.add_pages(0, PAGE_SIZE, measure=True).ok
    monkeypatch.setattr(system.cpu, "einit", lambda *a: SgxReturn.UNMASKED_EVENT)
    encl.task.send_signal()
    t0 = system.now
    r = encl.init()
    assert r.errno == "ERESTARTSYS" and not encl.encl.initialized
    assert system.stats()["einit"] == 20
    assert system.now - t0 >= 20_000_000  # one msleep(20) before the signal is seen
    # without a signal: 50 rounds, then the last code is an SGX error: -EPERM
    r = encl.init()
    assert r.errno == "EPERM" and r.result == SgxReturn.UNMASKED_EVENT
    assert system.stats()["einit"] == 20 + 50 * 20


def test_a_faulting_einit_is_eio_and_warned(monkeypatch):
    system = epcsim.System(epc="1M", cpus=2, seed=1)
    encl = system.create_enclave("64K")
    assert encl.add_pages(0, PAGE_SIZE, measure=True).ok
    monkeypatch.setattr(system.cpu, "einit", lambda *a: encls_fault(13))  # #GP
    assert encl.init().errno == "EIO"
    assert any("EINIT" in w for w in system.sgx.warnings)


# -- item 7: sgx_ioctl and signals ---------------------------------------------------------
def test_every_ioctl_is_a_syscall_round_trip():
    """An ioctl costs entering the kernel and returning to user space, even when the kernel
    refuses it at once: a -EAGAIN retry is one more such round trip (issue 8, item 5)."""
    system = epcsim.System(epc="1M", cpus=2, seed=1, costs={"user_return": 7_000})
    encl = system.create_enclave("64K")
    t0 = system.now
    r = encl.remove_pages(0, PAGE_SIZE)  # before EINIT: -EINVAL from sgx_ioc_sgx2_ready
    assert r.errno == "EINVAL"
    assert system.now - t0 == system.costs.syscall + 7_000


def test_provision_allows_the_provision_key():
    from epcsim.arch import Attribute

    system = epcsim.System(epc="1M", cpus=2, seed=1)
    encl = system.create_enclave("64K")
    assert encl.provision("/dev/null").errno == "EINVAL"
    assert encl.provision(None).errno == "EFAULT"
    assert encl.provision().ok
    assert encl.encl.attributes_mask & Attribute.PROVISIONKEY


# -- item 5: smaller divergences -------------------------------------------------------------
def test_eaug_page_keeps_the_accessed_bit_a_loaded_page_does_not():
    """vmf_insert_pfn installs the PTE with _PAGE_ACCESSED; only sgx_vma_fault clears it
    afterwards (sgx_encl_test_and_clear_young), sgx_encl_eaug_page does not (spec §8)."""
    system = epcsim.System(epc="1M", cpus=2, seed=1)
    encl = _built(system, size="128K", pages=4)
    idx = 20
    assert encl.eaccept(idx * PAGE_SIZE, pending=True).ok  # #PF -> EAUG -> EACCEPT
    e = encl.encl
    assert e.pte_present[idx] and e.pte_young[idx]
    # the first reclaim pass gives the EAUG'd page a second chance
    sgx = system.sgx
    young0 = system.stats()["reclaim_young"]
    _evict_all(system, encl)
    assert system.stats()["reclaim_young"] > young0 and e.epc[idx] < 0
    # brought back by a fault: the PTE is inserted and its Accessed bit cleared
    assert encl.eaccept(idx * PAGE_SIZE, pending=False).name != "SIGBUS"
    assert e.pte_present[idx] and not e.pte_young[idx]
    assert sgx.stats.eldu >= 2  # the SECS and the page


def test_reclaimer_write_frees_the_secs_whatever_ewb_returned(monkeypatch):
    """Spec §6.3 D.3: after the SECS has been through sgx_encl_ewb, sgx_encl_free_epc_page
    runs whether EWB succeeded or not; a failed SECS EWB loses the SECS (WARN)."""
    system = epcsim.System(epc="1M", cpus=2, seed=1)
    encl = _built(system, pages=4)
    e = encl.encl
    secs = e.secs_epc
    real = system.cpu.ewb
    monkeypatch.setattr(
        system.cpu,
        "ewb",
        lambda pi, p, va, slot: (encls_fault(13), None) if p == secs else real(pi, p, va, slot),
    )
    st0 = system.stats()
    _evict_all(system, encl)
    st = system.stats()
    assert e.secs_epc == -1 and e.secs_va == (-1, -1)
    assert st["secs_evictions"] == st0["secs_evictions"]  # it was not written out
    assert st["eremove"] == st0["eremove"] + 1  # sgx_encl_free_epc_page(secs)
    assert st["epc_pages_free"] == st["epc_pages_total"] - 1  # only the VA page is in use
    assert any("EWB" in w for w in system.sgx.warnings)
    # the enclave cannot come back: the SECS reload reads a hole and ELDU faults
    assert encl.access(PAGE_SIZE).sigbus


@pytest.mark.parametrize(("size", "covers"), [("64K", True), ("128K", False)])
def test_secs_reload_runs_the_pcmd_check(monkeypatch, size, covers):
    """__sgx_encl_eldu runs reclaimer_writing_to_pcmd for the SECS too, from its page index
    (size >> 12): in an enclave under 128K the SECS's PCMD shares page 0 with the children's
    (spec §7). It cannot be true at that moment - a SECS is evicted only once no child is
    resident - but the check is the kernel's and is run."""
    from epcsim.kernel.encl import SgxEncl

    system = epcsim.System(epc="1M", cpus=2, seed=1)
    encl = _built(system, size=size, pages=4)
    e = encl.encl
    _evict_all(system, encl)
    assert e.secs_epc == -1
    calls = []
    real = SgxEncl._reclaimer_writing_to_pcmd

    def spy(self, index):
        calls.append(index)
        return real(self, index)

    monkeypatch.setattr(SgxEncl, "_reclaimer_writing_to_pcmd", spy)
    assert encl.access(PAGE_SIZE).ok
    assert calls[0] == e.nr_pages  # the SECS first, with its own page index
    # what the check looks at for the SECS: the children sharing its PCMD page, if any
    e.reclaiming[2] = True
    assert e.epc[1] >= 0
    e.reclaiming[1] = True
    assert real(e, e.nr_pages) is covers
    assert (e.nr_pages < PCMDS_PER_PAGE) is covers


def test_free_counts_a_poisoned_page_as_free_but_never_hands_it_out():
    """sgx_free_epc_page (spec §5.3): a poisoned page goes to the poison list, yet is flagged
    IS_FREE and counted in sgx_nr_free_pages."""
    system = epcsim.System(epc="1M", cpus=2, seed=1)
    encl = _built(system, pages=4)
    epc = system.sgx.epc
    victim = int(encl.encl.epc[3])
    epc.set_poison(victim)
    free_list = sum(len(fl) for fl in epc.free_lists.values())
    nr_free = epc.nr_free_pages
    encl.close()
    assert epc.nr_free_pages == nr_free + 6  # 4 pages, SECS, VA page: the poisoned one too
    assert sum(len(fl) for fl in epc.free_lists.values()) == free_list + 5
    handed_out = []
    while (page := epc.alloc(0)) >= 0:
        handed_out.append(page)
    assert victim not in handed_out and epc.nr_free_pages == 1  # the count keeps it


def test_ipi_targets_the_union_of_mm_cpumask_over_the_enclaves_mms():
    """sgx_encl_cpumask is per mm, not per enclave: a thread of the same process running
    another enclave is a target (spec §6.3 D.1.d, §9); a thread of another process is not."""
    for shared in (True, False):
        system = epcsim.System(epc="1M", cpus=2, seed=1)
        a = _built(system, pages=4)
        b = system.create_enclave("64K", process=a if shared else None)
        assert b.add_pages(0, PAGE_SIZE).ok
        proc = a.start(np.tile(np.arange(1, 4), 20_000))  # keeps a CPU busy inside A
        system.run(until="20us")
        assert proc.is_alive
        ipi0 = system.stats()["ipi"]
        system._call(b.task, send_ipi(system.sgx, b.task, b.encl))
        assert system.stats()["ipi"] == ipi0 + (1 if shared else 0)
        system.run()


def test_create_enclave_with_process_must_be_an_enclave():
    system = epcsim.System(epc="1M", cpus=2, seed=1)
    with pytest.raises(ValueError, match="^process:"):
        system.create_enclave("64K", process="self")


def test_einit_reserved_mask_checks():
    """sgx_encl_init: a bit set in both a SIGSTRUCT value and its mask that the platform
    reserves is -EINVAL before EINIT runs; the same bit outside the mask is not checked."""
    system = epcsim.System(epc="1M", cpus=2, seed=1)
    encl = system.create_enclave("64K")
    assert encl.add_pages(0, PAGE_SIZE, measure=True).ok
    mr = system.cpu.secs_state(encl.encl.secs_epc).measurement_digest()
    bad_xfrm = 1 << (SUPPORTED_XFRM.bit_length() + 1)  # a component this CPU lacks

    def sig(**fields):
        attrs = int(encl.encl.attributes) | fields.pop("attr", 0)
        return Sigstruct.sign(mr, MODEL_SIGNER_MODULUS, attributes=attrs, **fields)

    for fields in (
        {"attr": 1 << 3, "attribute_mask": 1 << 3},  # SGX_ATTR_RESERVED_MASK bit 3
        {"attr": 1 << 12, "attribute_mask": 1 << 12},
        {"miscselect": 2, "miscmask": 2},  # only EXINFO (bit 0) exists
        {"xfrm": 3 | bad_xfrm, "xfrm_mask": bad_xfrm},
    ):
        assert encl.init(sig(**fields)).errno == "EINVAL", fields
    assert system.stats()["einit"] == 0
    # the value without the mask bit passes the kernel's checks and reaches EINIT
    r = encl.init(sig(attr=1 << 12))
    assert r.errno != "EINVAL" and system.stats()["einit"] == 1


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=(1 << 20)))
def test_create_size_is_einval_unless_a_power_of_two(size):
    system = epcsim.System(epc="1M", cpus=1, seed=1)
    power = size & (size - 1) == 0
    if power and size >= 2 * PAGE_SIZE:
        assert system.create_enclave(size).size == size
        return
    with pytest.raises(epcsim.IoctlError) as e:
        system.create_enclave(size)
    assert e.value.errno == (errno.EIO if power else errno.EINVAL)
    assert system.stats()["ecreate"] == (1 if power else 0)
    assert system.stats()["epc_pages_free"] == system.stats()["epc_pages_total"]
