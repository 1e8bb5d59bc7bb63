"""Enclave ioctls: validation order and errno (spec §10), partial ``count``."""

import pytest

import epcsim
from epcsim.arch import PAGE_SIZE, PageType, secinfo_flags
from epcsim.kernel.ioctl import AddPagesArgs, Secinfo
from epcsim.kernel.ioctl_sgx2 import ModifyTypesArgs, RemovePagesArgs, RestrictPermissionsArgs

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
    seen = {"n": 0}

    def pending():
        seen["n"] += 1
        return seen["n"] > 3  # a signal arrives after three pages

    encl.task.signal_pending = pending
    r = encl.add_pages(0, 8 * PAGE_SIZE)
    # spec §10.2: c > 0 keeps ret = 0 - partial success without an error
    assert r.ret == 0 and r.count == 3 * PAGE_SIZE
    seen["n"] = 100
    r = encl.add_pages(3 * PAGE_SIZE, PAGE_SIZE)
    assert r.errno == "ERESTARTSYS" and r.count == 0


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
    encl = system.create_enclave("64K")
    encl.encl.ioctl_busy = True  # another thread is inside an ioctl on this enclave
    assert encl.add_pages(0, 4096).errno == "EBUSY"
    encl.encl.ioctl_busy = False
    assert encl.add_pages(0, 4096).ok


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
        system.create_enclave("3K")
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
    free = system.stats()["epc_pages_free"]
    # ECREATE faults on a SECS whose size is not a power of two: -EIO, nothing leaks
    bad = sgx_ioc_enclave_create(encl.task, fresh, Secs(size=0x3000, base=0))
    assert system._call(encl.task, bad).errno == "EIO"
    assert system.stats()["epc_pages_free"] == free and not fresh.created
    none = sgx_ioc_enclave_create(encl.task, fresh, None)
    assert system._call(encl.task, none).errno == "EFAULT"


def test_signal_while_add_pages_reclaims_directly():
    import sys

    system = epcsim.System(epc="1M", cpus=2, seed=1)
    encl = system.create_enclave("4M")
    assert encl.add_pages(0, 200 * PAGE_SIZE).ok  # fills most of the 256-page EPC
    system.run(until="10ms")

    def pending():  # a signal seen only by sgx_alloc_epc_page's reclaim loop
        return sys._getframe(1).f_code.co_name == "alloc_epc_page"

    encl.task.signal_pending = pending
    r = encl.add_pages(200 * PAGE_SIZE, 200 * PAGE_SIZE)
    # the free list ran dry: -ERESTARTSYS out of the allocator ends the loop, count = done
    assert r.errno == "ERESTARTSYS" and 0 < r.count < 200 * PAGE_SIZE
    assert system.stats()["alloc_reclaim_batches"] == 0


def test_add_pages_progress_reports_each_page_and_changes_nothing(system):
    seen = []
    a = system.create_enclave("64K")
    r = a.add_pages(0, 5 * PAGE_SIZE, progress=lambda _e, c: seen.append(c))
    assert r.ok and seen == [PAGE_SIZE * i for i in range(1, 6)]
    b = system.create_enclave("64K")
    t0 = system.now
    assert b.add_pages(0, 5 * PAGE_SIZE).ok
    assert system.now - t0 == a.system.costs.syscall + 5 * (
        system.costs.eadd + system.costs.ioctl_page
    )  # same simulated cost with or without a hook (no VA growth, EPC not full)
