"""The invariant checker (``System(check=True)``) holds on a busy system and catches each
kind of broken book it claims to check."""

import numpy as np
import pytest

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.kernel.check import InvariantError, check
from epcsim.kernel.epc import SGX_EPC_PAGE_RECLAIMER_TRACKED

P = PAGE_SIZE


def _busy():
    """Two enclaves over a small EPC, part evicted, SECS of one possibly out, ksgxd asleep."""
    system = epcsim.System(epc="1M", cpus=2, seed=4, check=True)
    a = system.create_enclave("2M", name="a")
    assert a.add_pages(0, 200 * P).ok and a.init().ok
    b = system.create_enclave("2M", name="b")
    assert b.add_pages(0, 150 * P).ok and b.init().ok
    assert a.access_pages(np.arange(0, 200, 3)).ok
    system.run(until="50ms")
    assert system.sgx.ksgxd_sleeping and check(system.sgx) == []
    assert a.swapped_pages and a.resident_pages
    return system, a, b


def test_checker_is_on_in_the_tests():
    assert epcsim.System(epc="1M").check  # tests/conftest.py sets EPCSIM_CHECK=1


def _first(encl, resident=True):
    idx = np.flatnonzero((encl.epc >= 0) if resident else (encl.present & (encl.epc < 0)))
    return int(idx[0])


CORRUPTIONS = {
    "free count": lambda s, a, b: setattr(s.sgx.epc, "nr_free_pages", s.sgx.epc.nr_free_pages + 1),
    "page referenced twice": lambda s, a, b: b.encl.epc.__setitem__(
        _first(b.encl), a.encl.epc[_first(a.encl)]
    ),
    "resident page lost": lambda s, a, b: a.encl.epc.__setitem__(_first(a.encl), -1),
    "EPCM invalid": lambda s, a, b: s.cpu.epcm.valid.__setitem__(a.encl.epc[_first(a.encl)], False),
    "EPCM type": lambda s, a, b: s.cpu.epcm.pt.__setitem__(a.encl.epc[_first(a.encl)], 4),
    "VA slot freed": lambda s, a, b: a.encl.va_free_slot(
        int(a.encl.va_page[_first(a.encl, False)]),
        int(a.encl.va_slot[_first(a.encl, False)]),
        to_head=False,
    ),
    "backing record dropped": lambda s, a, b: s.backing[a.id].truncate(_first(a.encl, False)),
    "off the LRU": lambda s, a, b: s.sgx.lru.unmark(int(a.encl.epc[_first(a.encl)])),
    "untracked on the LRU": lambda s, a, b: s.sgx.epc.flags.__setitem__(
        a.encl.epc[_first(a.encl)],
        s.sgx.epc.flags[a.encl.epc[_first(a.encl)]] & (0xFF ^ SGX_EPC_PAGE_RECLAIMER_TRACKED),
    ),
    "child count": lambda s, a, b: setattr(a.encl, "secs_child_cnt", a.encl.secs_child_cnt + 1),
    "refcount": lambda s, a, b: setattr(a.encl, "refcount", a.encl.refcount + 1),
    "page_cnt": lambda s, a, b: setattr(a.encl, "page_cnt", a.encl.page_cnt - 1),
    "PTE of an evicted page": lambda s, a, b: a.encl.pte_present.__setitem__(
        _first(a.encl, False), True
    ),
}


@pytest.mark.parametrize("what", sorted(CORRUPTIONS))
def test_each_broken_book_is_caught(what):
    system, a, b = _busy()
    CORRUPTIONS[what](system, a, b)
    assert check(system.sgx), what
    with pytest.raises(InvariantError, match="after run"):
        system.run(until=0)


def test_a_checked_run_is_identical_to_an_unchecked_one():
    def go(flag):
        system = epcsim.System(epc="1M", cpus=3, seed=9, check=flag)
        rng = np.random.default_rng(1)
        es = []
        for i in range(3):
            e = system.create_enclave("2M", name=f"e{i}")
            assert e.add_pages(0, 150 * P).ok and e.init().ok
            es.append(e)
        for e in es:
            e.start(rng.integers(0, 150, 2000), write=rng.random(2000) < 0.3)
        system.run()
        s = system.stats()
        return s, system.cpu.epcm.tag.copy()

    (s1, t1), (s2, t2) = go(True), go(False)
    assert s1 == s2 and np.array_equal(t1, t2)
