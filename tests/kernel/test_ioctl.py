"""Enclave ioctls: validation order and errno (spec §10), partial ``count``."""

import errno

import pytest

import epcsim
from epcsim.arch import ERESTARTSYS, PAGE_SIZE, PageType, secinfo_flags
from epcsim.kernel.ioctl import AddPagesArgs, Secinfo
from epcsim.kernel.uapi_sgx2 import ModifyTypesArgs, RemovePagesArgs, RestrictPermissionsArgs

REG_RW = Secinfo(secinfo_flags(PageType.REG, 3))


@pytest.fixture
def system():
    return epcsim.System(epc="1M", cpus=2, seed=1)


def test_add_pages_validation_order(system):
    encl = system.create_enclave("64K")
    cases = [
        (AddPagesArgs(0, 4096, REG_RW, src_addr=0x1001), "EINVAL"),  # src unaligned
        (AddPagesArgs(1, 4096, REG_RW), "EINVAL"),  # offset unaligned
        (AddPagesArgs(0, 0, REG_RW), "EINVAL"),  # zero length
        (AddPagesArgs(0, 100, REG_RW), "EINVAL"),  # unaligned length
        (AddPagesArgs(60 * 1024, 8192, REG_RW), "EINVAL"),  # past the end
        (AddPagesArgs(0, 4096, None), "EFAULT"),  # SECINFO copy fails
        (AddPagesArgs(0, 4096, Secinfo(secinfo_flags(PageType.SECS, 3))), "EINVAL"),
        (AddPagesArgs(0, 4096, Secinfo(secinfo_flags(PageType.REG, 2))), "EINVAL"),  # W w/o R
        (AddPagesArgs(0, 4096, Secinfo(secinfo_flags(PageType.TCS, 1))), "EINVAL"),  # TCS perms
        (AddPagesArgs(0, 4096, Secinfo(secinfo_flags(PageType.REG, 3) | 1 << 40)), "EINVAL"),
        (
            AddPagesArgs(0, 4096, Secinfo(secinfo_flags(PageType.REG, 3), b"\1" + bytes(55))),
            "EINVAL",
        ),
        (None, "EFAULT"),
    ]
    for args, err in cases:
        r = encl.add_pages_raw(args)
        assert r.errno == err and r.count == 0, (args, r)
    # an unaligned src is reported before a bad offset: order matters
    r = encl.add_pages_raw(AddPagesArgs(1, 4096, REG_RW, src_addr=1))
    assert r.errno == "EINVAL"
    assert encl.add_pages(0, 8192).count == 8192
    r = encl.add_pages(4096, 8192)  # first page already present: xa_insert -EBUSY
    assert r.errno == "EBUSY" and r.count == 0


def test_add_pages_after_init_and_before_create(system):
    encl = system.create_enclave("64K")
    assert encl.add_pages(0, 4096).ok
    assert encl.init().ok
    assert encl.add_pages(4096, 4096).errno == "EINVAL"
    assert encl.init().errno == "EINVAL"  # already initialized


def test_add_pages_interrupted_returns_zero_with_partial_count(system):
    encl = system.create_enclave("64K")

    def signal_after_three(_encl, done):  # a signal arrives while the third page completes
        if done == 3 * PAGE_SIZE:
            encl.task.send_signal()

    r = encl.add_pages(0, 8 * PAGE_SIZE, progress=signal_after_three)
    # spec §10.2: c > 0 keeps ret = 0 - partial success without an error
    assert r.ret == 0 and r.count == 3 * PAGE_SIZE
    assert not encl.task.signal_pending()  # delivered on the way back to user space
    encl.task.send_signal()  # pending before the call: nothing is added
    r = encl.add_pages(3 * PAGE_SIZE, PAGE_SIZE)
    assert r.errno == "ERESTARTSYS" and r.count == 0
    assert encl.add_pages(3 * PAGE_SIZE, PAGE_SIZE).ok  # the next call runs normally


def test_init_rejects_bad_sigstruct(system):
    encl = system.create_enclave("64K")
    assert encl.add_pages(0, 4096, measure=True).ok
    sig = encl.sigstruct()
    sig.vendor = 0x1234
    assert encl.init(sig).errno == "EINVAL"
    other = system.create_enclave("64K")
    assert other.add_pages(0, 4096, "r", measure=True).ok
    r = encl.init(other.sigstruct())  # signed for a different measurement
    assert r.errno == "EPERM" and r.result != 0
    assert encl.init().ok


def test_concurrent_ioctl_on_one_enclave_is_ebusy(system):
    """sgx_ioctl owns SGX_ENCL_IOCTL: a second thread's ioctl while one runs gets -EBUSY."""
    from epcsim.engine.machine import Task
    from epcsim.kernel.driver import SGX_IOC_ENCLAVE_ADD_PAGES, sys_ioctl

    encl = system.create_enclave("64K")
    other = Task(system.machine, "second thread")
    out = {}

    def second():
        yield system.machine.env.timeout(5_000)  # while the first call adds its pages
        out["r"] = yield from sys_ioctl(
            other, encl.encl, SGX_IOC_ENCLAVE_ADD_PAGES, AddPagesArgs(8 * PAGE_SIZE, 4096, REG_RW)
        )
        other.release_cpu()

    system.machine.spawn(second())
    before = system.stats()["ioctl_ebusy"]
    assert encl.add_pages(0, 8 * PAGE_SIZE).ok
    assert out["r"].errno == "EBUSY" and out["r"].count == 0
    assert system.stats()["ioctl_ebusy"] == before + 1
    assert not encl.encl.present[8]  # the refused call did nothing
    assert encl.add_pages(8 * PAGE_SIZE, 4096).ok  # the bit is clear again


def test_unknown_ioctl_command_is_enotty(system):
    encl = system.create_enclave("64K")
    assert encl.ioctl(0xDEAD, None).errno == "ENOTTY"


def test_sgx2_ioctls_validation(system):
    encl = system.create_enclave("64K")
    assert encl.add_pages(0, 4 * PAGE_SIZE).ok
    # before EINIT: -EINVAL from sgx_ioc_sgx2_ready
    assert encl.modify_types(0, 4096, "trim").errno == "EINVAL"
    assert encl.init().ok
    rp = encl.restrict_permissions_raw
    assert rp(RestrictPermissionsArgs(0, 4096, 8)).errno == "EINVAL"  # bits beyond RWX
    assert rp(RestrictPermissionsArgs(0, 4096, 2)).errno == "EINVAL"  # W without R
    assert rp(RestrictPermissionsArgs(0, 4096, 1, result=1)).errno == "EINVAL"
    assert rp(RestrictPermissionsArgs(0, 4096, 1, count=1)).errno == "EINVAL"
    assert rp(RestrictPermissionsArgs(3, 4096, 1)).errno == "EINVAL"
    assert rp(None).errno == "EFAULT"
    mt = encl.modify_types_raw
    assert mt(ModifyTypesArgs(0, 4096, 0x100)).errno == "EINVAL"
    assert mt(ModifyTypesArgs(0, 4096, int(PageType.REG))).errno == "EINVAL"
    assert mt(ModifyTypesArgs(0, 4096, int(PageType.TRIM), count=4096)).errno == "EINVAL"
    assert encl.remove_pages_raw(RemovePagesArgs(0, 4096, count=1)).errno == "EINVAL"
    assert encl.remove_pages(0, 4096).errno == "EPERM"  # not a TRIM page
    assert encl.modify_types(8 * PAGE_SIZE, 4096).errno == "EFAULT"  # no page there


def test_sgx2_ioctls_need_an_sgx2_cpu():
    system = epcsim.System(epc="1M", cpus=2, sgx2=False)
    encl = system.create_enclave("64K")
    assert encl.add_pages(0, 4096).ok and encl.init().ok
    assert encl.modify_types(0, 4096).errno == "ENODEV"
    assert encl.restrict_permissions(0, 4096, "r").errno == "ENODEV"
    assert encl.remove_pages(0, 4096).errno == "ENODEV"


def test_python_arguments_raise_value_errors_naming_them(system):
    with pytest.raises(ValueError, match="^size:"):
        system.create_enclave("lots")
    encl = system.create_enclave("64K")
    with pytest.raises(ValueError, match="^length:"):
        encl.add_pages(0, 100)
    with pytest.raises(ValueError, match="^perm:"):
        encl.add_pages(0, 4096, "rwz")
    with pytest.raises(ValueError, match="^page_type:"):
        encl.modify_types(0, 4096, "secs")
    with pytest.raises(ValueError, match="^epc:"):
        epcsim.System(epc="lots")
    with pytest.raises(ValueError, match="^content_mode:"):
        epcsim.System(epc="1M", content_mode="zip")
    with pytest.raises(ValueError, match="^cpus:"):
        epcsim.System(epc="1M", cpus=0)


def test_create_validation(system):
    from epcsim.isa import Secs
    from epcsim.kernel.encl import SgxEncl
    from epcsim.kernel.ioctl import sgx_ioc_enclave_create

    encl = system.create_enclave("64K")
    again = sgx_ioc_enclave_create(encl.task, encl.encl, Secs(size=0x10000, base=0x10000))
    assert system._call(encl.task, again).errno == "EINVAL"  # already created
    fresh = SgxEncl(system.sgx, system.sgx.new_encl_id())
    system.sgx.enclaves[fresh.id] = fresh
    st0 = system.stats()
    # mainline sgx_encl_create: a size that is not a power of two is -EINVAL, before any
    # allocation (no VA page, no SECS page, no ECREATE)
    bad = sgx_ioc_enclave_create(encl.task, fresh, Secs(size=0x3000, base=0))
    assert system._call(encl.task, bad).errno == "EINVAL"
    st1 = system.stats()
    assert st1["epc_pages_free"] == st0["epc_pages_free"] and st1["ecreate"] == st0["ecreate"]
    assert st1["epa"] == st0["epa"] and not fresh.created
    # a power of two below 8K passes the kernel's check and ECREATE faults: -EIO, and the
    # SECS page (EREMOVE) and the first VA page are given back
    small = sgx_ioc_enclave_create(encl.task, fresh, Secs(size=0x1000, base=0))
    assert system._call(encl.task, small).errno == "EIO"
    st2 = system.stats()
    assert st2["ecreate"] == st1["ecreate"] + 1 and st2["eremove"] == st1["eremove"] + 2
    assert st2["epc_pages_free"] == st0["epc_pages_free"] and not fresh.created
    none = sgx_ioc_enclave_create(encl.task, fresh, None)
    assert system._call(encl.task, none).errno == "EFAULT"


def test_create_enclave_reports_a_refused_size_as_the_ioctl_errno(system):
    """A size the kernel refuses is not a Python error: it is CREATE's errno, raised as an
    OSError (IoctlError) because create_enclave has no result object to return."""
    free = system.stats()["epc_pages_free"]
    with pytest.raises(epcsim.IoctlError) as e:
        system.create_enclave(3 * PAGE_SIZE)  # not a power of two
    assert e.value.errno == errno.EINVAL and e.value.result.errno == "EINVAL"
    assert isinstance(e.value, OSError)
    with pytest.raises(epcsim.IoctlError) as e:
        system.create_enclave(PAGE_SIZE)  # a power of two ECREATE rejects (< 8K)
    assert e.value.errno == errno.EIO
    assert system.stats()["epc_pages_free"] == free and system.enclaves == []
    assert system.create_enclave("8K").size == 8192


def test_signal_stops_the_allocator_reclaim_loop():
    """sgx_alloc_epc_page(reclaim=true) checks signal_pending() each time it finds the free
    lists empty, before it reclaims: -ERESTARTSYS, no batch, and ksgxd is still woken."""
    system = epcsim.System(epc="1M", cpus=2, seed=1)
    encl = system.create_enclave("4M")
    assert encl.add_pages(0, 200 * PAGE_SIZE).ok  # 200 reclaimable pages on the LRU
    sgx, task = system.sgx, encl.task
    system.check = False  # the test holds the page it allocates outside any enclave's books
    taken = []
    while (page := sgx.epc.alloc(0)) >= 0:  # the free list runs dry (pages owned elsewhere)
        taken.append(page)
    before = system.stats()
    task.send_signal()
    page = system._call(task, sgx.alloc_epc_page(task, encl.id, 500, reclaim=True))
    after = system.stats()
    assert page == -ERESTARTSYS
    assert after["alloc_reclaim_batches"] == before["alloc_reclaim_batches"]
    assert after["ksgxd_wakeups"] == before["ksgxd_wakeups"] + 1
    # without a signal the same call gets a page (reclaiming itself if still needed)
    task.deliver_signal()
    assert system._call(task, sgx.alloc_epc_page(task, encl.id, 501, reclaim=True)) >= 0


def test_add_pages_progress_reports_each_page_and_changes_nothing(system):
    seen = []
    a = system.create_enclave("64K")
    r = a.add_pages(0, 5 * PAGE_SIZE, progress=lambda _e, c: seen.append(c))
    assert r.ok and seen == [PAGE_SIZE * i for i in range(1, 6)]
    b = system.create_enclave("64K")
    t0 = system.now
    assert b.add_pages(0, 5 * PAGE_SIZE).ok
    costs = system.costs
    assert system.now - t0 == costs.syscall + costs.user_return + 5 * (
        costs.eadd + costs.ioctl_page
    )  # same simulated cost with or without a hook (no VA growth, EPC not full)
