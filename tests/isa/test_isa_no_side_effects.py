"""A leaf that fails (a code or a fault) changes no processor state.

Every leaf is probed over a grid of operands against one state that has a page of each kind:
blocked but not tracked, PR set, unaccepted TRIM, evicted, PENDING, an LP inside with an
ETRACK still incomplete. Successful probes are skipped; failing ones must leave the EPCM,
the VA slots, the per-SECS state and the LPs exactly as they were.
"""

import itertools

import numpy as np
import pytest
from isa_helpers import BASE, SECS_EPC, SIZE, enclave, evict

from epcsim.arch import PAGE_SIZE, PageType, SgxReturn, secinfo_flags
from epcsim.isa import PageInfo, SealedPage, Secs, SgxCpu

# EPC map: 0 SECS, 1 VA, 2..7 REG (2 blocked+untracked, 3 PR, 4 TRIM, 5 evicted), 8 PENDING,
# 9 a second VA page, 10..19 free; -1 and 25 do not resolve to EPC pages.
EPCS = [-1, 0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 25]
AUG_AT = BASE + 8 * PAGE_SIZE
ADDRS = [BASE, BASE + PAGE_SIZE, AUG_AT, BASE + 10 * PAGE_SIZE, BASE + 8, BASE + SIZE]
FLAGS = [
    secinfo_flags(t, p, s)
    for t in (PageType.SECS, PageType.TCS, PageType.REG, PageType.VA, PageType.TRIM)
    for p in (0, 1, 2, 3)
    for s in (0, 8, 16, 32)
] + [1 << 40, 0xC3]
LPS = [0, 2, 5]


def rich_state() -> tuple[SgxCpu, SealedPage]:
    cpu = enclave(pages=6, nr_pages=20, lps=3)
    record = evict(cpu, 5, slot=0)
    assert cpu.emodpr(secinfo_flags(PageType.REG, 1), 3) == 0
    assert cpu.emodt(secinfo_flags(PageType.TRIM), 4) == 0
    assert cpu.eaug(PageInfo(linaddr=AUG_AT, secs=SECS_EPC), 8) == 0
    assert cpu.epa(9) == 0
    assert cpu.eenter(2, -1, SECS_EPC) == 0
    assert cpu.etrack(SECS_EPC) == 0  # LP 2 must exit before this epoch completes
    assert cpu.eblock(2) == 0
    return cpu, record


def snapshot(cpu: SgxCpu):
    e = cpu.epcm
    fields = ("valid", "pt", "rwx", "pending", "modified", "pr", "blocked", "secs")
    arrays = [getattr(e, f).copy() for f in (*fields, "linaddr", "bepoch", "tag")]
    secs = {
        eid: (
            s.epc,
            s.child_count,
            s.epoch,
            frozenset(s.tracking),
            frozenset(s.inside),
            frozenset(s.busy_tcs),
            s.initialized,
            s.measurement.peek(),
        )
        for eid, s in cpu.secs_by_eid.items()
    }
    va = {k: v.copy() for k, v in cpu.va.items()}
    return arrays, secs, va, tuple(cpu.lp_eid), cpu._next_eid, dict(cpu.secs_at)


def unchanged(a, b) -> bool:
    return (
        all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
        and a[1] == b[1]
        and a[2].keys() == b[2].keys()
        and all(np.array_equal(a[2][k], b[2][k]) for k in a[2])
        and a[3:] == b[3:]
    )


def eldu_records(rec: SealedPage):
    tampered = bytearray(rec.contents)
    tampered[0] ^= 1
    yield rec
    yield SealedPage(bytes(tampered), rec.pcmd)
    yield SealedPage(rec.contents, bytes(128))
    yield SealedPage(rec.contents, rec.pcmd[:64])


def probes(rec: SealedPage):
    """(name, callable) pairs; each callable runs one leaf on a CPU."""
    p = itertools.product
    for epc, flags, addr, secs in p(EPCS, FLAGS[::3], ADDRS, [0, 2, -1]):
        pi = PageInfo(linaddr=addr, secs=secs, contents=7, metadata=flags)
        yield "eadd", lambda c, pi=pi, epc=epc: c.eadd(pi, epc)
    for epc, addr, secs in p(EPCS, ADDRS, [0, 2, -1]):
        pi = PageInfo(linaddr=addr, secs=secs)
        yield "eaug", lambda c, pi=pi, epc=epc: c.eaug(pi, epc)
    for epc, base in p(EPCS, [0x100000, 0x1000]):
        pi = PageInfo(contents=Secs(size=0x10000, base=base), metadata=0)
        yield "ecreate", lambda c, pi=pi, epc=epc: c.ecreate(pi, epc)
    for secs, epc, chunk in p(EPCS, EPCS, [0, 16]):
        yield "eextend", lambda c, s=secs, e=epc, k=chunk: c.eextend(s, e, k)
    for leaf in ("eremove", "epa", "eblock", "etrack"):
        for epc in EPCS:
            yield leaf, lambda c, leaf=leaf, epc=epc: getattr(c, leaf)(epc)
    for epc, va, slot, pi in p(EPCS, [1, 2, 9, 25], [0, 1, 512], [PageInfo(), PageInfo(BASE)]):
        yield "ewb", lambda c, a=(pi, epc, va, slot): c.ewb(*a)[0]
    for r, epc, va, slot, (addr, secs) in p(
        eldu_records(rec), [2, 10, 25], [1, 9], [0, 1], [(BASE + 5 * PAGE_SIZE, 0), (BASE, 0)]
    ):
        pi = PageInfo(linaddr=addr, secs=secs, contents=r.contents, metadata=r.pcmd)
        yield "eldu", lambda c, a=(pi, epc, va, slot): c.eldu(*a)
    for leaf, flags, epc in p(("emodpr", "emodt"), FLAGS, EPCS):
        yield leaf, lambda c, leaf=leaf, f=flags, e=epc: getattr(c, leaf)(f, e)
    for lp, tcs, secs in p(LPS, [-1, 2, 8], [0, 2]):
        yield "eenter", lambda c, a=(lp, tcs, secs): c.eenter(*a)
    for lp in LPS:
        yield "eexit", lambda c, lp=lp: c.eexit(lp)
    for leaf, lp, flags, addr, epc in p(("eaccept", "emodpe"), LPS, FLAGS, ADDRS, EPCS):
        yield leaf, lambda c, leaf=leaf, a=(lp, flags, addr, epc): getattr(c, leaf)(*a)
    for lp, flags, addr, dst, src in p(LPS, FLAGS[::4], ADDRS[:3], EPCS[::2], [2, 6, 8]):
        yield "eacceptcopy", lambda c, a=(lp, flags, addr, dst, src): c.eacceptcopy(*a)


LEAVES = sorted({name for name, _ in probes(SealedPage(b"x", b"x"))})


@pytest.mark.parametrize("leaf", LEAVES)
def test_a_failing_leaf_changes_nothing(leaf):
    cpu, rec = rich_state()
    before = snapshot(cpu)
    failures = 0
    for name, run in probes(rec):
        if name != leaf:
            continue
        ret = run(cpu)
        if ret in (0, SgxReturn.VA_SLOT_OCCUPIED):
            cpu, _ = rich_state()  # deterministic: the same state and record again
            before = snapshot(cpu)
            continue
        failures += 1
        assert unchanged(before, snapshot(cpu)), (leaf, ret)
    assert failures, f"{leaf}: no probe failed"
