"""The compiled ops of the backing store, the allocator, the LRU and the VA slots
(``epcsim.fast.ops.backing``, ``epc``, ``lru``, ``va``) against the Python path they
restate, step by step on generated sequences: two copies of the state, one changed by the
Python methods and one by the ops, must agree after every step in every array and counter.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.arch import PAGE_SIZE, PCMD_SIZE, PageType
from epcsim.fast.ops import backing as bops
from epcsim.isa.sealing import pack_pcmd
from epcsim.kernel.backing import CHUNK, BackingRecord, EnclaveBacking, _pack_flags

EID = 77
#: a file of three chunks (the last one short), the SECS at index 2 * CHUNK + 40
SIZE = (2 * CHUNK + 40) * PAGE_SIZE
#: a few pages, so that steps meet: pages sharing a PCMD page (0-2, 31), the next PCMD
#: page (32), both sides of a chunk boundary, the last page and the SECS
FEW = [0, 1, 2, 31, 32, CHUNK - 1, CHUNK, 2 * CHUNK + 39, 2 * CHUNK + 40]
INDICES = st.one_of(st.sampled_from(FEW), st.sampled_from(FEW), st.integers(0, 2 * CHUNK + 40))
#: SECINFO.FLAGS EWB writes: R/W/X, PENDING, MODIFIED, PR and a SECS/TCS/REG/TRIM type
EWB_FLAGS = st.builds(
    lambda bits, pt: bits | (int(pt) << 8),
    st.integers(0, 0x3F),
    st.sampled_from([PageType.SECS, PageType.TCS, PageType.REG, PageType.TRIM]),
)
MACS = st.one_of(
    st.binary(min_size=8, max_size=8).map(lambda b: b + bytes(8)),  # tag mode's
    st.binary(min_size=16, max_size=16),
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("pin"), INDICES),
        st.tuples(st.just("store"), INDICES, st.binary(min_size=8, max_size=8), EWB_FLAGS, MACS),
        st.tuples(st.just("truncate"), INDICES, st.booleans()),
        st.tuples(st.just("tamper"), INDICES, st.binary(max_size=12), st.booleans()),
    ),
    max_size=60,
)


def _op_store(f: EnclaveBacking, index: int, pinned: int, ct: bytes, flags: int, mac: bytes):
    """What a compiled driver does: the op, and the Python path where the op says so."""
    pcmd = pack_pcmd(flags, EID, mac)
    if not f._width or f._eid != EID:  # the driver's precondition: a file EWB wrote to
        if pinned >= 0:
            f._pinned_gen[index] = pinned
        f.store(index, BackingRecord(ct, pcmd))
        return
    while True:
        rows = f.compiled()
        # (writable copies of the bytes, as the driver's scratch rows are: one signature)
        code = bops.backing_store(
            f.present.bits,
            f.odd.bits,
            f.chunk_row,
            rows.contents,
            rows.mac,
            rows.flags,
            f.high_row,
            rows.high,
            f.pcmd_live,
            f.pcmd_kept,
            f.pcmd_gen,
            index,
            pinned,
            np.frombuffer(ct, dtype=np.uint8).copy(),
            _pack_flags(flags),
            np.frombuffer(mac, dtype=np.uint8).copy(),
        )
        if code == bops.NEED_CHUNK:
            f.add_chunk(index // CHUNK)
        elif code == bops.NEED_HIGH:
            f.add_high(index // CHUNK)
        elif code == bops.NEED_PYTHON:
            if pinned >= 0:
                f._pinned_gen[index] = pinned
            f.store(index, BackingRecord(ct, pcmd))
            return
        else:
            assert code in (0, 1)
            f.nr_records += code
            return


def _op_truncate(f: EnclaveBacking, index: int, busy: bool) -> None:
    code = bops.backing_truncate(
        f.present.bits, f.odd.bits, f.pcmd_live, f.pcmd_kept, f.pcmd_gen, index, busy
    )
    if code == bops.NEED_PYTHON:
        f.truncate(index, pcmd_busy=busy)
    else:
        f.nr_records -= code


def _truncate_rule(f: EnclaveBacking, index: int, busy: bool) -> None:
    """``EnclaveBacking.truncate`` written out in Python (it calls the op itself now)."""
    if not 0 <= index < f.present.size or not f.present[index]:
        return
    f.present[index] = False
    f.nr_records -= 1
    if f._odd.pop(index, None) is not None:  # a chunk's bit: does it still hold a raw one
        c = index // CHUNK
        f.odd[c] = any(i // CHUNK == c for i in f._odd)
    p = index // 32
    f.pcmd_live[p] -= 1
    f.pcmd_kept[p] = f.pcmd_live[p] == 0 and busy
    if f.pcmd_live[p] == 0 and not busy:
        f.pcmd_gen[p] += 1


def _same(py: EnclaveBacking, op: EnclaveBacking, seen: set[int]) -> None:
    """Every array and counter agrees, and every record of the pages in ``seen`` reads the
    same, through the Python lookup and the compiled one (pages never touched are checked
    by the bit arrays: no record)."""
    assert py.nr_records == op.nr_records and py.pcmd_lost == op.pcmd_lost
    assert (py.present.bits == op.present.bits).all() and (py.odd.bits == op.odd.bits).all()
    for name in ("pcmd_live", "pcmd_kept", "pcmd_gen"):
        assert (getattr(py, name) == getattr(op, name)).all(), name
    assert py.bytes_used == op.bytes_used and dict(py._odd) == dict(op._odd)
    # ``odd`` is one bit per chunk: set exactly where a record of the chunk is kept raw
    raw_chunks = {i // CHUNK for i in py._odd}
    assert [bool(b) for b in py.odd[:]] == [c in raw_chunks for c in range(len(py.odd))]
    ct_out = np.empty(8, dtype=np.uint8)
    mac_out = np.empty(16, dtype=np.uint8)
    rows = op.compiled()
    for i in sorted(seen):
        rec = py.lookup(i)
        assert rec == op.lookup(i)
        got = bops.backing_lookup(
            op.present.bits,
            op.odd.bits,
            op.chunk_row,
            rows.contents,
            rows.mac,
            rows.flags,
            op.high_row,
            rows.high,
            i,
            ct_out,
            mac_out,
        )
        if rec is None:
            assert got == bops.ABSENT
        elif i // CHUNK in raw_chunks:  # left to Python: the chunk holds a raw record
            assert got == bops.RAW
        else:  # the compact form is exactly the bytes ELDU reads
            assert rec.contents == ct_out.tobytes() and rec.pcmd[112:] == mac_out.tobytes()
            assert rec.pcmd == pack_pcmd(
                int.from_bytes(rec.pcmd[:8], "little"), EID, mac_out.tobytes()
            )
            assert _pack_flags(int.from_bytes(rec.pcmd[:8], "little")) == got


@settings(max_examples=200, deadline=None)
@given(STEPS)
def test_backing_ops_are_the_python_path_step_by_step(steps):
    py, op = EnclaveBacking(1, SIZE), EnclaveBacking(1, SIZE)
    pins: dict[int, int] = {}  # the driver's pins (the op side)
    seen = set(FEW)
    for step in steps:
        kind, index = step[0], step[1]
        seen.add(index)
        if kind == "pin":
            py.get_backing(index)
            pins[index] = int(bops.backing_pin(op.pcmd_gen, index))
        elif kind == "store":
            ct, flags, mac = step[2], step[3], step[4]
            py.store(index, BackingRecord(ct, pack_pcmd(flags, EID, mac)))
            _op_store(op, index, pins.pop(index, -1), ct, flags, mac)
        elif kind == "truncate":
            _truncate_rule(py, index, step[2])
            _op_truncate(op, index, step[2])
        elif py.lookup(index) is not None:  # tamper: contents or PCMD, any length
            raw, which = step[2], step[3]
            for f in (py, op):
                f.tamper(index, contents=raw if which else None, pcmd=None if which else raw)
        _same(py, op, seen)


def test_a_store_after_the_pcmd_page_went_is_left_to_python():
    """The May 2022 race: the PCMD page was truncated after the pin, so the op changes
    nothing and says so; the Python path then keeps the lost (zero) PCMD raw."""
    f = EnclaveBacking(1, SIZE)
    f.store(0, BackingRecord(bytes(8), pack_pcmd(0x201, EID, bytes(16))))
    f.store(1, BackingRecord(bytes(8), pack_pcmd(0x201, EID, bytes(16))))
    pinned = int(bops.backing_pin(f.pcmd_gen, 1))
    f.truncate(0)
    f.truncate(1)  # the PCMD page of pages 0-31 is now empty: truncated, generation + 1
    before = f.present.bits.copy(), f.pcmd_live.copy()
    rows = f.compiled()
    args = (f.present.bits, f.odd.bits, f.chunk_row, rows.contents, rows.mac, rows.flags)
    more = (f.high_row, rows.high, f.pcmd_live, f.pcmd_kept, f.pcmd_gen)
    ct, mac = np.zeros(8, np.uint8), np.zeros(16, np.uint8)
    code = bops.backing_store(*args, *more, 1, pinned, ct, 0x82, mac)
    assert code == bops.NEED_PYTHON
    assert (f.present.bits == before[0]).all() and (f.pcmd_live == before[1]).all()
    f._pinned_gen[1] = pinned
    f.store(1, BackingRecord(bytes(8), pack_pcmd(0x201, EID, bytes(16))))
    assert f.pcmd_lost == 1 and f.lookup(1).pcmd == bytes(PCMD_SIZE)
    assert 1 in f._odd and f.odd[1 // CHUNK]  # kept raw; its chunk's bit set


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["alloc", "free", "mark", "unmark", "putback", "poison"]),
            st.integers(0, 1),
            st.integers(0, 9),
        ),
        max_size=80,
    )
)
def test_allocator_and_lru_ops_are_the_python_path_step_by_step(steps):
    """``alloc_from_node``/``free_page`` against ``EpcPages`` (+ the owner writes of
    ``Sgx.alloc_epc_page``), ``lru_mark``/``lru_unmark``/``lru_putback`` against
    ``KernelLru``, on two nodes sharing one link pair with the LRU; refusals (a double
    free, a free on the LRU, a mark twice) change nothing on either side."""
    from epcsim.fast.ops import epc as eops
    from epcsim.fast.ops import lru as lops
    from epcsim.kernel.epc import SGX_EPC_PAGE_IS_FREE, EpcPages
    from epcsim.kernel.policy import KernelLru

    py, op = EpcPages([6, 4], [0, 1]), EpcPages([6, 4], [0, 1])
    py_lru, op_lru = KernelLru(10, epc=py), KernelLru(10, epc=op)
    op_free = py.nr_free_pages
    links = op.links
    for kind, node, page in steps:
        if kind == "alloc":
            got = py.alloc_from_node(node)
            if got >= 0:
                py.owner_encl[got], py.owner_index[got] = 3, page
            row = op.free_lists[node].row
            assert (
                eops.alloc_from_node(
                    links.prev,
                    links.next,
                    links.ends,
                    op.owner_flags,
                    op.owner_encl,
                    row,
                    3,
                    page,
                )
                == got
            )
            op_free -= got >= 0
        elif kind == "free":
            try:
                py.free(page)
                want = 0
            except RuntimeError as e:
                want = eops.FREED_TWICE if "twice" in str(e) else eops.FREED_ON_LRU
            row = op.free_lists[op.node_of(page)].row
            code = eops.free_page(
                links.prev,
                links.next,
                links.ends,
                op.owner_flags,
                op.owner_encl,
                row,
                page,
            )
            assert code == want
            op_free += code == 0
        elif kind == "poison":
            py.set_poison(page)
            op.set_poison(page)
        elif py.flags[page] & SGX_EPC_PAGE_IS_FREE:
            continue  # the kernel marks only pages it owns (a free page is on a free list)
        else:
            fn = {"mark": lops.lru_mark, "unmark": lops.lru_unmark, "putback": lops.lru_putback}
            try:
                getattr(py_lru, kind)(page)
                want = 0
            except RuntimeError:
                want = lops.NOT_ALLOWED
            row = op_lru.list.row
            assert fn[kind](links.prev, links.next, links.ends, op.owner_flags, row, page) == want
        assert py.nr_free_pages == op_free
        assert (py.flags == op.flags).all() and (py.owner_flags == op.owner_flags).all()
        assert (py.owner_encl == op.owner_encl).all() and (py.owner_index == op.owner_index).all()
        assert (py.links.prev == links.prev).all() and (py.links.next == links.next).all()
        assert (py.links.ends == links.ends).all()
        assert py_lru.order() == op_lru.order()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["take", "free"]), st.integers(0, 3), st.booleans()), max_size=80
    )
)
def test_va_free_slot_is_the_python_path_step_by_step(steps):
    """``va_free_slot`` against ``VaPageList.free_slot`` (and ``take_slot`` on both sides to
    fill pages), on an enclave with three VA pages: the slot maps, the list's links and its
    ``ends`` row agree after every step."""
    from epcsim.arch import SGX_VA_SLOT_COUNT
    from epcsim.fast.ops.va import va_free_slot
    from epcsim.kernel.encl_page import VaIds
    from epcsim.kernel.va_page import VaPageList

    py, op = VaPageList(VaIds()), VaPageList(VaIds())
    taken: list[tuple[int, int]] = []
    for va in (100, 200, 300):
        py.add(va)
        op.add(va)
    for va in (100, 200):  # the first two nearly full: pages move to the tail and back
        vid = py.ids.id_of[va]
        py.used[vid, :] = 0xFF
        op.used[vid, :] = 0xFF
        py.used[vid, -1] = op.used[vid, -1] = 0x7F
        taken += [(va, s) for s in range(SGX_VA_SLOT_COUNT - 1)]
    for kind, k, to_head in steps:
        if kind == "take":
            if all(py.used[py.ids.id_of[v]].min() == 0xFF for v in (100, 200, 300)):
                continue
            got = py.take_slot()
            assert op.take_slot() == got
            taken.append(got)
        elif taken:
            va, slot = taken.pop(k % len(taken))
            py.free_slot(va, slot, to_head)
            lk = op.links
            va_free_slot(
                op.used, lk.prev, lk.next, lk.ends, op.list.row, op.ids.id_of[va], slot, to_head
            )
        assert (py.used == op.used).all()
        assert py.order() == op.order()
        assert (py.links.ends == op.links.ends).all()
        assert (py.links.prev == op.links.prev).all() and (py.links.next == op.links.next).all()


def test_the_compiled_lookup_reads_a_runs_records_as_the_python_path():
    """On the backing store a real run left (``tag`` mode's 8-byte MACs, ``mac`` mode's
    16-byte ones, which give the chunks ``high`` rows), ``backing_lookup`` reads every
    record's contents, MAC and flags exactly as ``EnclaveBacking.lookup`` rebuilds them."""
    import epcsim

    for mode in ("tag", "mac"):
        system = epcsim.System(epc="1M", cpus=2, seed=5, content_mode=mode)
        encl = system.create_enclave("4M")
        assert encl.add_pages(0, 600 * PAGE_SIZE).ok and encl.init().ok
        encl.access_pages(list(range(600)))
        system.run(until="20ms")
        f = system.backing[encl.encl.id]
        assert len(f.records) > 200 and (mode == "tag") == (not f.high_rows)
        rows = f.compiled()
        ct_out = np.empty(8, dtype=np.uint8)
        mac_out = np.empty(16, dtype=np.uint8)
        args = (f.present.bits, f.odd.bits, f.chunk_row, rows.contents, rows.mac, rows.flags)
        for i in range(f.present.size):
            rec = f.lookup(i)
            got = bops.backing_lookup(*args, f.high_row, rows.high, i, ct_out, mac_out)
            if rec is None:
                assert got == bops.ABSENT
                continue
            assert ct_out.tobytes() == rec.contents and mac_out.tobytes() == rec.pcmd[112:]
            assert got == _pack_flags(int.from_bytes(rec.pcmd[:8], "little"))
