"""The invariant checker: ``System(check=True)`` (issue 10).

After every public API call and at the end of ``System.run()`` the model's books must balance.
The checks read state only (a checked run is byte-identical to an unchecked one) and are
vectorised with NumPy, a few array passes per enclave, so the whole test suite runs checked
(``EPCSIM_CHECK=1``, set by ``tests/conftest.py``).

What must hold at any instant the checker can see:

* **EPC conservation.** ``sgx_nr_free_pages`` equals the pages flagged IS_FREE and the free
  lists' lengths; every page is free, poisoned and parked, referenced by exactly one live
  enclave (an enclave page, its SECS or a VA page), isolated by the reclaimer after its EWB
  (freed right after the lock drops), leaked (EREMOVE failed: ``leaked_pages``), in flight
  in an enclave that is not settled (see below), or taken outside any enclave (no owner: a
  virtual EPC, which the LRU and the enclaves never see). No page is referenced twice.
* **Every enclave page in exactly one place.** A page never added (or removed) has no EPC
  page, VA slot, backing record or PTE. An added page is resident, or evicted with a VA slot
  and a backing record - or lost after a failed ELDU (the kernel's "kernel bug" path), which
  ``eldu_failed`` counts. A PTE only maps a resident page.
* **The EPCM agrees with the kernel.** A resident page is valid in the EPCM at its address,
  under the enclave's resident SECS; the SECS is a valid PT_SECS page, VA pages PT_VA; the
  CPU's child count of each SECS is its valid children; free pages are invalid.
* **The LRU** (``sgx_active_page_list``) holds only TRACKED, resident, not BEING_RECLAIMED
  enclave pages; TRACKED pages off the list are the ones a reclaimer isolated, and only those
  are BEING_RECLAIMED. The list links are consistent and its length is right.

An enclave is *settled* when no ioctl runs on it and nobody holds ``encl->lock``: every
multi-step operation on its pages (an ioctl, a fault, an EWB) holds one or the other. For a
settled enclave the checks are exact: nothing in flight, every resident page TRACKED, the
EPCM page type equals the kernel's, the kernel's used VA slots are exactly the evicted pages'
(and the SECS's) and the CPU's non-zero slot versions, ``secs_child_cnt`` counts the
resident pages, ``page_cnt`` the added pages plus the SECS, and the refcount is the handle's
references (fd, mm) plus one per page a reclaimer has isolated.

Cgroup charges are checked through a hook (``check_cgroup_charges``) once cgroups exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epcsim.arch import SGX_VA_SLOT_COUNT, PageType
from epcsim.kernel.epc import (
    OWNER_LEAKED,
    SGX_EPC_PAGE_IS_FREE,
    SGX_EPC_PAGE_POISON,
    SGX_EPC_PAGE_RECLAIMER_TRACKED,
)

if TYPE_CHECKING:
    from epcsim.kernel.encl import SgxEncl
    from epcsim.kernel.main import Sgx


class InvariantError(AssertionError):
    """The model's state broke an invariant: a bug in the model, never the user's fault."""


def check_cgroup_charges(sgx: Sgx) -> list[str]:
    """Hook for the EPC cgroup (spec §17, proposed upstream, not modelled yet).

    Once ``sgx.cgroups`` exists it must offer ``invariant_violations()``: every charged
    page is an in-use page charged exactly once, and each cgroup's usage is the sum of its
    charges (and of its children's). Nothing to check until then."""
    cgroups = getattr(sgx, "cgroups", None)
    if cgroups is None:
        return []
    return list(cgroups.invariant_violations())


def settled(encl: SgxEncl) -> bool:
    """No ioctl in progress, ``encl->lock`` free and no release under way: no operation on
    its pages is midway."""
    return not encl.ioctl_busy and not encl.lock.locked and not encl.dead


def check(sgx: Sgx) -> list[str]:
    """Every invariant violation in ``sgx``'s state, as messages (empty: all hold)."""
    bad: list[str] = []
    epc = sgx.epc
    hw = sgx.cpu
    epcm = hw.epcm
    n = epc.nr_pages
    flags = epc.flags

    # -- free pages ---------------------------------------------------------------------
    free = (flags & SGX_EPC_PAGE_IS_FREE) != 0
    nfree = int(np.count_nonzero(free))
    # a poisoned page freed is flagged IS_FREE and counted, but parked off the free lists
    listed = sum(len(fl) for fl in epc.free_lists.values())
    parked_free = int(np.count_nonzero(free & ((flags & SGX_EPC_PAGE_POISON) != 0)))
    if not nfree == listed + parked_free == epc.nr_free_pages:
        bad.append(
            f"free pages: {epc.nr_free_pages} counted, {nfree} flagged IS_FREE, {listed} "
            f"listed, {parked_free} poisoned"
        )
    if (epc.owner_encl[free] != -1).any():
        bad.append("a free page has an owner")
    if not sgx.ewb_failures and (epcm.valid[free]).any():
        bad.append(f"free pages valid in the EPCM: {np.flatnonzero(free & epcm.valid[:])[:8]}")
    parked = ~free & ((flags & SGX_EPC_PAGE_POISON) != 0) & (epc.owner_encl == -1)
    in_use = ~free & ~parked

    # -- the reclaimer's list ----------------------------------------------------------------
    lru = sgx.lru
    on = getattr(lru, "on", None)
    if on is None:
        on = np.zeros(n, dtype=np.bool_)
        for page in range(n):
            on[page] = page in lru
    tracked = (flags & SGX_EPC_PAGE_RECLAIMER_TRACKED) != 0
    isolated = tracked & ~on
    if len(lru) != int(np.count_nonzero(on)):
        bad.append(f"LRU length {len(lru)} but {int(np.count_nonzero(on))} pages on it")
    if (on & ~tracked).any():
        bad.append(f"pages on the LRU without TRACKED: {np.flatnonzero(on & ~tracked)[:8]}")
    if (tracked & ~in_use).any():
        bad.append("a free page is TRACKED")
    bad += _check_links(lru, on)

    # -- references from the live enclaves -----------------------------------------------------
    children: list[np.ndarray] = []  # resident enclave pages
    others: list[int] = []  # SECS and VA pages
    unsettled_ids: list[int] = []
    held = np.bincount(
        epc.owner_encl[isolated].astype(np.int64) + 1, minlength=sgx._next_encl_id + 2
    )
    for encl in list(sgx.enclaves.values()):
        if not settled(encl):
            unsettled_ids.append(encl.id)
        bad += _check_enclave(sgx, encl, children, others, isolated, on, int(held[encl.id + 1]))
    all_children = np.concatenate(children) if children else np.zeros(0, dtype=np.int64)
    refs = np.bincount(
        np.concatenate([all_children, np.asarray(others, dtype=np.int64)]), minlength=n
    )
    child = np.zeros(n, dtype=np.bool_)  # referenced as an enclave page (not SECS/VA)
    child[all_children] = True
    if (refs > 1).any():
        bad.append(f"EPC pages referenced twice: {np.flatnonzero(refs > 1)[:8]}")
    referenced = refs > 0
    if (referenced & ~in_use).any():
        bad.append(f"free EPC pages referenced: {np.flatnonzero(referenced & ~in_use)[:8]}")
    if (on & ~child).any():
        bad.append(f"LRU pages that are no resident enclave page: {np.flatnonzero(on & ~child)}")

    # -- pages nobody references ---------------------------------------------------------------
    leaked = in_use & (epc.owner_index == OWNER_LEAKED)
    if int(np.count_nonzero(leaked)) != sgx.leaked_pages:
        bad.append(f"{sgx.leaked_pages} pages leaked but {int(np.count_nonzero(leaked))} marked")
    # pages taken outside the driver's enclaves (a KVM guest's virtual EPC, spec §13) have
    # no enclave owner; they must stay off the LRU and out of every enclave's books
    vepc = in_use & (epc.owner_encl == -1)
    if (vepc & (referenced | tracked)).any():
        bad.append(f"pages without an enclave owner in use by one: {np.flatnonzero(vepc)[:8]}")
    loose = in_use & ~referenced & ~leaked & ~vepc
    # isolated after EWB: invalid (EWB invalidated it) until the reclaimer frees it
    after_ewb = loose & isolated
    if not sgx.ewb_failures and (epcm.valid[after_ewb]).any():
        bad.append(f"isolated pages still valid after EWB: {np.flatnonzero(after_ewb)}")
    inflight = loose & ~isolated
    if (inflight).any():
        pages = np.flatnonzero(inflight)
        owners = epc.owner_encl[pages]
        busy = np.isin(owners, np.asarray(unsettled_ids, dtype=owners.dtype))
        if not (busy).all():
            bad.append(
                f"EPC pages in use by no one (owners {sorted(set(owners[~busy].tolist()))}): "
                f"{pages[~busy][:8]}"
            )
        # before its leaf ran an allocated page is invalid; a fresh VA page is already PT_VA
        fresh_va = epcm.valid[pages] & (epcm.pt[pages] == PageType.VA)
        if (epcm.valid[pages] & ~fresh_va).any():
            bad.append(f"in-flight EPC pages already valid: {pages[epcm.valid[pages]][:8]}")

    # -- the CPU's view --------------------------------------------------------------------
    valid = epcm.valid[:]
    kids = np.bincount(epcm.secs[valid & (epcm.secs >= 0)], minlength=n)
    for secs_page, st in hw.secs_at.items():
        if st.child_count != int(kids[secs_page]):
            bad.append(
                f"SECS {secs_page}: the CPU counts {st.child_count} children, "
                f"{int(kids[secs_page])} valid"
            )
    bad += hw.va.check()  # the VA slots' row index in its two forms

    # -- global counts when nothing is midway -------------------------------------------------
    if not unsettled_ids:
        va_total = sum(len(e.va_pages) for e in sgx.enclaves.values())
        if va_total != sgx.stats.va_pages:
            bad.append(f"va_pages counter {sgx.stats.va_pages}, enclaves hold {va_total}")

    bad += check_cgroup_charges(sgx)
    return bad


def _check_links(lru, on: np.ndarray) -> list[str]:
    """``KernelLru``'s doubly linked list, checked in one pass over its arrays."""
    prev = getattr(lru, "prev", None)
    nxt = getattr(lru, "next", None)
    if prev is None or nxt is None:
        return []
    pages = np.flatnonzero(on)
    if pages.size == 0:
        return [] if lru.head == -1 and lru.tail == -1 else ["empty LRU with a head or tail"]
    bad = []
    heads = pages[prev[pages] == -1]
    tails = pages[nxt[pages] == -1]
    if heads.tolist() != [lru.head] or tails.tolist() != [lru.tail]:
        bad.append(f"LRU ends: head {lru.head} tail {lru.tail}, found {heads[:4]} {tails[:4]}")
    linked = pages[nxt[pages] != -1]
    succ = nxt[linked]
    if (~on[succ]).any() or (prev[succ] != linked).any():
        bad.append("LRU links are inconsistent (next/prev do not mirror each other)")
    return bad


def _check_enclave(
    sgx: Sgx,
    encl: SgxEncl,
    children: list[np.ndarray],
    others: list[int],
    isolated: np.ndarray,
    on: np.ndarray,
    held: int,
) -> list[str]:
    bad: list[str] = []
    name = encl.name
    epc = sgx.epc
    hw = sgx.cpu
    epcm = hw.epcm
    exact = settled(encl)
    if not encl.created:
        return []
    if encl.dead:  # sgx_encl_release is freeing its pages (EREMOVE costs time)
        children.append(encl.epc[encl.epc >= 0].astype(np.int64))
        others.extend(([encl.secs_epc] if encl.secs_epc >= 0 else []) + list(encl.va_pages))
        return []

    present = encl.present
    # the running counts (``kernel/page_counts.py``) against the arrays
    scan = encl.counts.scan()
    if (encl.counts.resident, encl.counts.swapped) != scan:
        bad.append(
            f"{name}: resident/swapped counts {encl.counts.resident}/{encl.counts.swapped},"
            f" the page arrays hold {scan[0]}/{scan[1]}"
        )
    res_idx = np.flatnonzero(encl.epc >= 0)
    res = encl.epc[res_idx].astype(np.int64)

    # -- resident pages ----------------------------------------------------------------------
    if (~present[res_idx]).any():
        bad.append(f"{name}: EPC pages for pages never added: {res_idx[~present[res_idx]][:8]}")
    children.append(res)
    if (epc.owner_encl[res] != encl.id).any() or (epc.owner_index[res] != res_idx).any():
        bad.append(f"{name}: resident pages whose EPC owner is someone else")
    if exact and not (epcm.valid[res]).all():
        bad.append(f"{name}: resident pages invalid in the EPCM: {res_idx[~epcm.valid[res]][:8]}")
    if res.size and encl.secs_epc < 0:
        bad.append(f"{name}: {res.size} resident pages while the SECS is evicted")
    # midway (an EREMOVE under way) a page may already be invalid: compare the valid ones
    ok = epcm.valid[res]
    if (epcm.secs[res[ok]] != encl.secs_epc).any():
        bad.append(f"{name}: resident pages under another SECS in the EPCM")
    linaddr = np.uint64(encl.base) + (res_idx[ok].astype(np.uint64) << np.uint64(12))
    if (epcm.linaddr[res[ok]] != linaddr).any():
        bad.append(f"{name}: EPCM addresses differ from the pages' addresses")
    if (encl.reclaiming[res_idx] & ~isolated[res]).any():
        bad.append(f"{name}: BEING_RECLAIMED pages the reclaimer has not isolated")
    if (on[res] & encl.reclaiming[res_idx]).any():
        bad.append(f"{name}: BEING_RECLAIMED pages on the LRU")

    # -- evicted and absent pages --------------------------------------------------------------
    out_idx = np.flatnonzero(present & (encl.epc < 0))
    va_of = encl.va_page[out_idx].astype(np.int64)
    slot_of = encl.va_slot[out_idx].astype(np.int64)
    absent = ~present
    if (absent & ((encl.va_page >= 0) | encl.pte_present | encl.reclaiming)).any():
        bad.append(f"{name}: pages never added have a VA slot, a PTE or BEING_RECLAIMED")
    if (encl.pte_present & (encl.epc < 0)).any():
        bad.append(f"{name}: PTEs mapping pages that are not resident")
    if (va_of < 0).any():
        bad.append(f"{name}: evicted pages without a VA slot: {out_idx[va_of < 0][:8]}")
    if (encl.va_page[res_idx] >= 0).any():
        bad.append(f"{name}: resident pages still holding a VA slot")

    # -- the backing store ---------------------------------------------------------------------
    f = sgx.backing.files.get(encl.id)
    if f is None:
        bad.append(f"{name}: no backing file")
    else:
        rec = f.present[: encl.nr_pages]
        if (rec & ~(present & (encl.epc < 0))).any():
            bad.append(f"{name}: backing records for pages resident or never added")
        lost = int(out_idx.size - np.count_nonzero(rec[out_idx]))
        if lost > sgx.stats.eldu_failed + sgx.ewb_failures:
            bad.append(
                f"{name}: {lost} evicted pages have no backing record "
                f"(only {sgx.stats.eldu_failed} ELDUs failed)"
            )
        secs_out = encl.secs_epc < 0
        if bool(f.present[f.secs_index]) and not secs_out and exact:
            bad.append(f"{name}: a SECS record in backing while the SECS is resident")
        lossy = sgx.stats.eldu_failed or sgx.ewb_failures  # the kernel-bug paths lose pages
        if secs_out and not f.present[f.secs_index] and not lossy:
            bad.append(f"{name}: the SECS is neither resident nor in backing")

    # -- the SECS and the VA pages -----------------------------------------------------------
    if encl.secs_epc >= 0:
        s = encl.secs_epc
        others.append(s)
        # midway the SECS may be written back already, its EREMOVE still to come
        if exact and (not epcm.valid[s] or int(epcm.pt[s]) != PageType.SECS or s not in hw.secs_at):
            bad.append(f"{name}: SECS page {s} is not a valid PT_SECS page")
    vas = np.asarray(encl.va_pages, dtype=np.int64)
    others.extend(encl.va_pages)
    if vas.size and (not (epcm.valid[vas]).all() or (epcm.pt[vas] != PageType.VA).any()):
        bad.append(f"{name}: VA pages that are not valid PT_VA pages")
    ids = encl.va_ids
    live = np.flatnonzero(ids.epc[: ids.nr] >= 0)
    if sorted(encl.va_pages) != sorted(ids.id_of) or sorted(ids.epc[live].tolist()) != sorted(
        ids.id_of
    ):
        bad.append(f"{name}: VA page numbers and the VA page list differ")
    free_rows = np.ones(encl.va.used.shape[0], dtype=np.bool_)
    free_rows[live] = False
    if encl.va.used[free_rows].any():
        bad.append(f"{name}: a free VA page number has slots marked used")
    pos = {va: i for i, va in enumerate(encl.va_pages)}
    # want[row, slot]: how many evicted pages (and the SECS) the kernel keeps in each slot
    want = np.zeros((len(encl.va_pages), SGX_VA_SLOT_COUNT), dtype=np.int32)
    if va_of.size:
        order = np.argsort(vas)
        sorted_vas = vas[order]
        at = np.minimum(np.searchsorted(sorted_vas, va_of), max(vas.size - 1, 0))
        in_list = (sorted_vas[at] == va_of) if vas.size else np.zeros(va_of.size, np.bool_)
        if not in_list.all():
            bad.append(f"{name}: evicted pages name a VA page the enclave does not own")
        np.add.at(want, (order[at[in_list]], slot_of[in_list]), 1)
    if encl.secs_va[0] >= 0 and encl.secs_va[0] in pos:
        want[pos[encl.secs_va[0]], encl.secs_va[1]] += 1
    if (want > 1).any():
        bad.append(f"{name}: two evicted pages share a VA slot")
    if encl.va_pages:
        used = np.stack([encl.va_used_slots(va) for va in encl.va_pages])
        versions = None
        if all(va in hw.va for va in encl.va_pages):
            versions = np.stack([hw.va[va] for va in encl.va_pages])
        else:
            bad.append(f"{name}: a VA page the CPU does not know")
        if ((want > 0) & ~used).any():
            bad.append(f"{name}: evicted pages in VA slots marked free")
        if exact:
            if (used & (want == 0)).any():
                bad.append(f"{name}: VA slots in use by no evicted page")
            if versions is not None and (used != (versions != 0)).any():
                bad.append(f"{name}: the kernel's used VA slots differ from the CPU's versions")

    # -- exact books of a settled enclave ----------------------------------------------------
    if exact:
        if (~((epc.flags[res] & SGX_EPC_PAGE_RECLAIMER_TRACKED) != 0)).any():
            bad.append(f"{name}: resident pages the reclaimer does not track")
        if (epcm.pt[res] != encl.type[res_idx]).any():
            bad.append(f"{name}: EPCM page types differ from the kernel's")
        if encl.secs_child_cnt != res.size:
            bad.append(f"{name}: secs_child_cnt {encl.secs_child_cnt}, {res.size} resident")
        nr_present = int(np.count_nonzero(present))
        if encl.page_cnt != nr_present + 1:
            bad.append(f"{name}: page_cnt {encl.page_cnt}, {nr_present} pages + the SECS")
        handle = getattr(encl, "handle", None)
        if handle is not None:
            want_ref = (not handle.closed) + int(handle._mm_ref) + held
            if encl.refcount != want_ref:
                bad.append(
                    f"{name}: refcount {encl.refcount}, expected {want_ref} (fd, mm, "
                    f"{held} pages isolated by a reclaimer)"
                )
    return bad


def assert_invariants(sgx: Sgx, where: str) -> None:
    """Raise ``InvariantError`` listing every violation found after ``where``."""
    bad = check(sgx)
    if bad:
        raise InvariantError(f"after {where}: " + "; ".join(bad))
