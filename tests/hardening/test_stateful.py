"""Random API programs over several enclaves on a small EPC (hypothesis stateful testing).

Every step runs with the invariant checker on (``System(check=True)``); a shadow model keeps
the bytes of the pages no SGX2 operation has touched, and those must read back exactly and
never SIGBUS. ``make test`` runs a short version; ``EPCSIM_LONG=1`` runs at least 100,000
steps and prints the rate::

    EPCSIM_LONG=1 .venv/bin/python -m pytest tests/hardening/test_stateful.py -q -s
"""

import os
import time

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

import epcsim
from epcsim.arch import PAGE_SIZE
from epcsim.kernel.check import check

P = PAGE_SIZE
LONG = os.environ.get("EPCSIM_LONG", "") not in ("", "0")
STEPS_PER_EXAMPLE = 50
LONG_STEPS = int(os.environ.get("EPCSIM_LONG_STEPS", 100_000))
PAGES = 64  # an enclave's ELRANGE (256K); the EPC holds 128 pages
MAX_LIVE = 4  # enclaves alive at once

#: errnos an SGX2 page ioctl may give on a valid range of pages in unknown states
SGX2_ERRNOS = {None, "EAGAIN", "EFAULT", "EINVAL", "EPERM", "EBUSY"}


def _stamp(encl_id: int, page: int, gen: int) -> bytes:
    return f"e{encl_id}p{page}g{gen}".encode().ljust(16, b".")


class Model:
    """The shadow of one enclave: bytes of the pages in a known, plain REG RW state."""

    def __init__(self, handle, added: int):
        self.h = handle
        self.known: dict[int, bytes] = {p: _stamp(handle.id, p, 0) for p in range(added)}
        self.gen = 0


class EnclaveMachine(RuleBasedStateMachine):
    enclaves = Bundle("enclaves")
    steps = 0

    @initialize(cpus=st.integers(1, 8), direct=st.booleans(), seed=st.integers(0, 2**16))
    def boot(self, cpus, direct, seed):
        self.system = epcsim.System(
            epc=128 * P,
            cpus=cpus,
            direct_reclaim=direct,
            seed=seed,
            content_mode="full",
            check=True,
        )
        self.live: list[Model] = []

    def _step(self):
        EnclaveMachine.steps += 1

    @rule(target=enclaves, added=st.integers(1, 48))
    def create(self, added):
        self._step()
        if len(self.live) >= MAX_LIVE:
            return multiple()
        h = self.system.create_enclave(PAGES * P)
        data = b"".join(_stamp(h.id, p, 0).ljust(P, b"\0") for p in range(added))
        assert h.add_pages(0, added * P, "rw", data=data).ok
        assert h.init().ok
        m = Model(h, added)
        self.live.append(m)
        return m

    @rule(m=enclaves, page=st.integers(0, PAGES - 1), write=st.booleans())
    def access(self, m, page, write):
        self._step()
        if m.h.closed:
            return
        out = m.h.access(page * P, write=write)
        assert not out.sigbus or page not in m.known, out
        if page in m.known:
            assert out.ok, out

    @rule(m=enclaves, page=st.integers(0, PAGES - 1))
    def write_read_back(self, m, page):
        self._step()
        if m.h.closed or page not in m.known:
            return
        m.gen += 1
        data = _stamp(m.h.id, page, m.gen)
        assert m.h.write(page * P, data).ok
        m.known[page] = data

    @rule(m=enclaves)
    def read_all_known(self, m):
        self._step()
        if m.h.closed:
            return
        for page, data in sorted(m.known.items())[:8]:
            assert m.h.read(page * P, len(data)) == data, page

    @rule(
        m=enclaves,
        op=st.sampled_from(["trim", "tcs", "restrict", "remove"]),
        first=st.integers(0, PAGES - 1),
        n=st.integers(1, 8),
        bad=st.sampled_from([None, "unaligned", "zero", "beyond"]),
    )
    def sgx2_ioctl(self, m, op, first, n, bad):
        self._step()
        if m.h.closed:
            return
        off, length = first * P, n * P
        if bad == "unaligned":
            off += 8
        elif bad == "zero":
            length = 0
        elif bad == "beyond":
            off, length = (PAGES - 1) * P, 2 * P
        h = m.h
        if op == "trim":
            r = h.modify_types(off, length, "trim")
        elif op == "tcs":
            r = h.modify_types(off, length, "tcs")
        elif op == "restrict":
            r = h.restrict_permissions(off, length, "r")
        else:
            r = h.remove_pages(off, length)
        if bad:
            assert r.errno == "EINVAL", (bad, r)
            return
        assert r.errno in SGX2_ERRNOS, r
        assert 0 <= r.count <= length and r.count % P == 0
        for p in range(first, min(first + n, PAGES)):
            m.known.pop(p, None)  # its state is no longer plain REG RW

    @rule(
        m=enclaves,
        page=st.integers(0, PAGES - 1),
        kind=st.sampled_from(["trim", "pr", "pending"]),
    )
    def eaccept(self, m, page, kind):
        self._step()
        if m.h.closed:
            return
        h = m.h
        if kind == "trim":
            r = h.eaccept(page * P, "trim", "", modified=True)
        elif kind == "pr":
            r = h.eaccept(page * P, "reg", "r", pr=True)
        else:
            r = h.eaccept(page * P, "reg", "rw", pending=True)
        assert not r.sigbus or page not in m.known, r
        if page in m.known:  # a plain page: EACCEPT reports a mismatch, changes nothing
            assert r.ret != 0

    @rule(m=enclaves, page=st.integers(48, PAGES - 1))
    def eaug_grow(self, m, page):
        """Touch an address never added: the kernel EAUGs it; EACCEPT makes it plain."""
        self._step()
        if m.h.closed or page in m.known or m.h.encl.present[page]:
            return
        out = m.h.access(page * P)
        assert out.pf_error and not out.sigbus, out  # PENDING until accepted
        r = m.h.eaccept(page * P, "reg", "rw", pending=True)
        assert r.ok, r
        m.known[page] = bytes(16)

    @rule(m=enclaves, n=st.integers(1, 400), until=st.integers(0, 200_000))
    def thread(self, m, n, until):
        self._step()
        if m.h.closed or not m.known:
            return
        rng = np.random.default_rng(n)
        pages = rng.choice(sorted(m.known), n)
        proc = m.h.start(pages, write=rng.random(n) < 0.3)
        self.system.run(until=until)
        if not proc.is_alive:
            assert proc.value.ok, proc.value

    @rule()
    def run_all(self):
        self._step()
        self.system.run()

    @rule(m=consumes(enclaves))
    def close(self, m):
        self._step()
        assert m.h.close() in (0, -epcsim.arch.EBADF)
        assert m.h.close() == -epcsim.arch.EBADF
        self.live = [x for x in self.live if x is not m]

    @invariant()
    def books_balance(self):
        if hasattr(self, "system"):
            assert check(self.system.sgx) == []

    def teardown(self):
        if not hasattr(self, "system"):
            return
        self.system.run()
        # one check at the end instead of one per read
        was, self.system.check = self.system.check, False
        for m in self.live:
            if not m.h.closed:
                for page, data in m.known.items():
                    assert m.h.read(page * P, len(data)) == data
                m.h.close()
        self.system.check = was
        self.system.run(until="50ms")
        s = self.system.stats()
        assert s["epc_pages_free"] == s["epc_pages_total"] and not s["enclaves"]
        assert s["leaked_pages"] == 0 and s["warnings"] == 0


def test_random_api_programs_keep_every_invariant():
    EnclaveMachine.steps = 0
    t0 = time.perf_counter()
    while True:  # long mode: batches of random programs until the step target is met
        run_state_machine_as_test(
            EnclaveMachine,
            settings=settings(
                max_examples=200 if LONG else 12,
                stateful_step_count=STEPS_PER_EXAMPLE,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=not LONG,
                database=None,
            ),
        )
        if not LONG or EnclaveMachine.steps >= LONG_STEPS:
            break
        done = EnclaveMachine.steps
        print(f"  {done} steps, {done / (time.perf_counter() - t0):,.0f} steps/s", flush=True)
    dt = time.perf_counter() - t0
    steps = EnclaveMachine.steps
    print(f"\nstateful: {steps} steps, 0 violations, {steps / dt:,.0f} steps/s")
    if LONG:
        assert steps >= LONG_STEPS
