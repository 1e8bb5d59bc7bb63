"""The kernel side of a driver call: the arrays the state machines work on, and codes.

Why two kinds of arrays: the per-page state (EPC pages, LRU and free lists, the enclave's
page arrays, VA pages, EPCM, the backing store's rows) already lives in NumPy arrays, and
the driver takes *those* arrays (no copy: a change is the Python objects' change). What the
reference keeps in Python objects - ``Counters`` fields, ``nr_free_pages``, the SECS's
epoch and tracking set, the version LCG, ``encl->refcount``, the free timeline - is copied
into the small arrays below at entry and folded back when the call ends
(``bridge.fold``).

``kc`` holds the global scalars and ``ke`` one enclave's (``K_*`` columns, ``int64``; the
columns ``ENCLAVE_COLUMNS`` names are ``ke``'s, the others ``kc``'s: "Two enclaves" below);
``cnt`` the counters the call adds to
``Counters`` (``COUNTERS`` names them, in column order); ``ku`` the ``uint64`` scalars
(the version LCG); ``rc`` one row per reclaimer (``RC_*``: ksgxd's and direct reclaim's
batch locals, ``reclaim.py``); ``batch`` their isolated pages ``[r, k] = (page, index,
pinned PCMD generation, enclave slot)``, the kept ones compacted at the front after phase
B; ``ft`` the free timeline's new points ``(ns, nr_free)``; ``warn`` the rare outcomes the
Python side turns into the reference's WARNs ``(kind, ret, page)``.
"""

from __future__ import annotations

from collections import namedtuple

from epcsim.fast.cosim.jit import core_jit

# -- kc: scalars (``ke``: the columns of ``ENCLAVE_COLUMNS``) -----------------------------
K_NR_FREE = 0  #: ``sgx_nr_free_pages`` (``EpcPages.nr_free_pages``)
K_LRU_ROW = 1  #: the LRU's row of ``epc_ends``
K_HIGH = 2  #: ``SGX_NR_HIGH_PAGES`` (``Sgx.high_pages``)
K_NR_TO_SCAN = 3  #: ``Sgx.nr_to_scan``
K_SECS_EPC = 4  #: ``encl->secs.epc_page``
K_CHILD_CNT = 5  #: ``encl->secs_child_cnt``
K_SECS_CHILDREN = 6  #: the CPU's ``SecsState.child_count``
K_REFCOUNT = 7  #: ``encl->refcount``
K_EPOCH = 8  #: ``SecsState.epoch``
#: ``SecsState.tracking`` as a bit mask of LPs (bit ``lp``; session ``nthreads``, PATHS.md
#: N2: with several threads on the core each LP leaves the ETRACK epoch on its own)
K_TRACKING = 9
K_EID = 10  #: ``SecsState.eid``
K_ENCL_ID = 11  #: the enclave's id (``owner_encl`` of its pages)
K_INITIALIZED = 12
K_SLEEPING = 13  #: ``Sgx.ksgxd_sleeping``
#: 14: ``reclaim.py``'s row of a service it asks (``SVC_STORE``: whose record it is)
K_SVC_R = 14
#: 15, 16: the enclave ids of slots 0 and 1 (``owner_encl`` of their pages; the same with
#: one enclave): phase A's slot of a page (``reclaim.py``)
K_SLOT_ID0 = 15
K_SLOT_ID1 = 16
#: 17: the slot of the enclave a ``SVC_CHUNK``/``SVC_STORE`` concerns (``reclaim.py``)
K_SVC_E = 17
#: 18: the enclave's backing file's record width (``EnclaveBacking._width``; 0 until its
#: first record): ``get_backing`` gives a chunk its row only once the file has one, and the
#: file's first record is stored by Python (``SVC_STORE``: ``store`` lays the file out;
#: PATHS.md "Two enclaves in the regime", item 5, session ``twoencl3``)
K_B_WIDTH = 18
#: 19, 20: the enclave's resident and swapped pages the call added (deltas, as
#: ``K_NR_RECORDS``): ``SgxEncl.counts``' running counts (``kernel/page_counts.py``), moved
#: where a machine writes a page's ``desc`` or PRESENT bit (``driver/page_counts.py``)
K_RESIDENT = 19
K_SWAPPED = 20
#: 21-23: unused (the batch's locals moved to ``rc``, 2026-11-26, session ``mtrim2``)
K_FT_N = 24  #: points in ``ft``
#: rows of ``ft``: a full buffer stops the core for Python's fold (``SVC_FT_FULL``: a return
#: into Python, the fold, a re-entry), so its size changes how often a call comes back, never
#: a result (the points are recorded in order either way, and no Python code reads the
#: timeline while the core runs; ``tests/fast/test_fold_buffers.py``). ``FT_ROWS`` for a
#: driver call's own ``KState``; ``FT_ROWS_KEPT`` for the one ``StreamCore`` keeps across a
#: ``System``'s calls (``stream_entry.EntryPoints.kernel_slots``), allocated once: 16,384 rows
#: (256 KiB) hold row 1's ~13,800 points a call (two a fault: the fault's allocation,
#: ksgxd's free), so its timed call no longer stops three times for the fold (session
#: ``fault5``, PATHS.md "Per fault on the core")
FT_ROWS = 4096
FT_ROWS_KEPT = 16384
K_WARN_N = 25  #: rows in ``warn``
K_SVC = 26  #: the Python work the call ended for (``SVC_*``), 0 if none
K_SVC_ARG = 27
K_HB = 28  #: the driver's own hand-back (``KB_*``), 0 if none
K_HB_PAGE = 29  #: the page it concerns
K_VA_ROW = 30  #: ``encl->va_pages``'s row of ``va_ends``
K_NR_RECORDS = 31  #: records the call added to the backing store (``nr_records``)
K_EWB_FAILURES = 32  #: ``Sgx.ewb_failures`` added
K_CPUMASK = 33  #: the enclave's cpumask as bits (``sgx_encl_cpumask``, for ``send_ipi``),
#: taken at entry; the thread's CPU (``K_THREAD_T``) is added while it holds one
K_LRU_OPS = 34  #: ``Costs`` the state machine charges: lru_op
K_AGE_CHECK = 35
K_BACKING_ALLOC = 36
K_ZAP = 37
K_EBLOCK_NS = 38
K_EWB_NS = 39
K_ETRACK_NS = 40
K_IPI_NS = 41
K_WAKEUP_NS = 42
#: 43: the enclave threads on the core: task rows ``K_THREAD_T`` .. ``K_THREAD_T +
#: K_NTHREADS - 1`` (``send_ipi``'s mask and AEX; 1 but for ``threads_bridge``, session
#: ``nthreads``)
K_NTHREADS = 43
#: ``SecsState.inside`` as a bit mask of LPs (bit ``lp``: ``SgxCpu.lp_eid[lp]`` is this
#: enclave's); EENTER/ERESUME set the thread's LP's bit, AEX/EEXIT clear it (and its
#: ``K_TRACKING`` bit), ETRACK copies it into ``K_TRACKING`` (PATHS.md N2; an ``int64``:
#: LPs 0..62, ``slots.check_slots`` refuses more CPUs)
K_INSIDE = 44
K_THREAD_T = 45  #: the first enclave thread's task row on the core (-1: none in the call)
#: the enclave thread's slot: ``send_ipi`` adds its CPU, and the IPI's AEX takes it out, only
#: for a victim of its own enclave; the thread's ``tstate.TC_ESLOT`` (session ``twoencl3``)
K_THREAD_SLOT = 46
K_BASE = 47  #: ``encl->base``: ENCLAVEADDRESS of a child is derived from it (``isa.epcm``);
#: a record's LINADDR is ``base + (index << 12)``
K_TOP_STOP = 48  #: ksgxd stops at K0's loop top, or at K0's check when a served step
#: begins there (after its wake-up run), with ``KB_TOP`` instead of going on: its machine
#: served between calls hands ksgxd to its generator when Python left the regime
#: 49: unused (``dlist``'s length is ``KState.dn``, shared by the file's ``KState``s)
#: ELDUs of a record the call wrote itself (no MAC to check): a diagnostic, never folded
K_DEFER_LOADS = 50
N_KC = 52

#: The columns that belong to one enclave, kept in its own ``KState.ke`` (PATHS.md "Two
#: enclaves in the regime", decision item 1; built by session ``twoencl2``): its SECS, child
#: counts, refcount, epoch and tracking set, ids, base, VA list, records, cpumask and LPs
#: inside. Same constants as ``kc``'s (``ke`` has ``N_KC`` columns, these used), so a column
#: moves between the two by its array, not its number. ``tests/fast/test_kstate_slots.py``
#: checks that no compiled function reads one of them from ``kc``.
ENCLAVE_COLUMNS = (
    K_SECS_EPC, K_CHILD_CNT, K_SECS_CHILDREN, K_REFCOUNT, K_EPOCH, K_TRACKING, K_EID,
    K_ENCL_ID, K_INITIALIZED, K_VA_ROW, K_NR_RECORDS, K_CPUMASK, K_INSIDE, K_BASE, K_B_WIDTH,
    K_RESIDENT, K_SWAPPED,
)  # fmt: skip

# -- rc: what belongs to one reclaimer (``reclaim.py``: row 0 ksgxd, row 1 direct reclaim) --
RC_PC = 0  #: the batch's pc (``reclaim.P_*``; ``P_A`` between batches)
RC_NB = 1  #: pages isolated by the batch
RC_NK = 2  #: pages kept after phase B
RC_I = 3  #: the phase's loop index
RC_VA = 4  #: the VA page of the current EWB
RC_SLOT = 5  #: its slot
RC_VID = 6  #: its VA page number (``VaIds``)
RC_RET = 7  #: the current EWB's result
#: the current EWB's record: its content tag in plaintext (u64 bits), and once it is
#: sealed (``encls.seal_record``: only for a record Python stores) the contents
RC_CT = 8
#: its VA slot's version (u64 bits), and once sealed its MAC's first 8 bytes
RC_MAC = 9
RC_PACKED = 10  #: its SECINFO.FLAGS in the backing store's one-byte form
RC_IPI_MASK = 11  #: ``send_ipi``'s cpumask, taken before its IPI's run
N_RC = 12

#: the ``Counters`` fields a call adds to, in ``cnt``'s column order
COUNTERS = (
    "ksgxd_wakeups",
    "ksgxd_batches",
    "ksgxd_pages_reclaimed",
    "reclaim_batches",
    "reclaim_scanned",
    "reclaim_young",
    "eblock",
    "ewb_attempts",
    "ewb",
    "etrack",
    "ipi",
)
(
    CN_WAKEUPS,
    CN_BATCHES,
    CN_PAGES,
    CN_RECLAIM_BATCHES,
    CN_SCANNED,
    CN_YOUNG,
    CN_EBLOCK,
    CN_EWB_ATTEMPTS,
    CN_EWB,
    CN_ETRACK,
    CN_IPI,
) = range(len(COUNTERS))

# -- what a driver call ends with -------------------------------------------------------------
#: the call ends because Python must do something first; the task stays at its pc and the
#: next call resumes it there (``K_SVC_ARG`` says what)
SVC_NONE = 0
SVC_VA_ROW = 1  #: VA page ``K_SVC_ARG`` has no row of versions yet (``VaPages._new_row``)
SVC_CHUNK = 2  #: backing chunk ``K_SVC_ARG`` has no row yet (``EnclaveBacking.add_chunk``)
SVC_STORE = 3  #: EWB's record of page ``K_SVC_ARG`` must be stored by Python (a PCMD lost
#: to a truncated page, or a record kept raw): ``EnclaveBacking.store``
SVC_FT_FULL = 4  #: the free timeline's buffer is full: fold it, then go on
SVC_WARN_FULL = 5  #: the warnings buffer is full
SVC_UNSEAL = 6  #: ELDU's record of page ``K_SVC_ARG`` is in a chunk with a raw record:
#: Python checks it (``EnclaveBacking.lookup`` + ``Sealer.unseal``) and writes the result
#: into ``tc``
SVC_TRUNCATE = 7  #: ELDU's truncation in a chunk with a raw record (``EnclaveBacking.truncate``)
SVC_LAT_FULL = 8  #: the fault latencies' buffer is full: fold it, then go on
#: ADD_PAGES' VA page (``add.py`` A2, session ``addrun``): EPA's effect on EPC page
#: ``K_SVC_ARG`` after its run (the EPCM entry, the zeroed version slots: ``SgxCpu.epa``,
#: whose row index Python keeps) and ``sgx_alloc_va_page``'s count
SVC_EPA = 9
#: ... and ``sgx_encl_add_va_page`` under ``encl->lock``: VA page ``K_SVC_ARG`` at the head
#: of ``encl->va_pages`` (``VaPageList.add``, which may grow the list's arrays)
SVC_VA_ADD = 10

#: the driver's hand-backs (``K_HB``): a step that needs Python objects the driver lacks,
#: detected *before* the step (PATHS.md)
KB_NONE = 0
KB_SECS = 1  #: the page about to be written back is the SECS's last resident child: the
#: SECS's eviction (``sgx_reclaimer_write``'s second EWB and EREMOVE) follows
KB_RELEASE = 2  #: ``kref_put`` would drop the last reference (``sgx_encl_release``)
KB_UNEXPECTED = 3  #: a state the regime excludes (a page of another type or enclave on
#: the LRU, an odd LINADDR): the reference raises or WARNs there, the driver stops
# the enclave thread's (PATHS.md T0-T7, ``thread.py``)
KB_TCS = 4  #: the TCS is not mapped: ``_ensure_tcs``'s TCS fault (EENTER/ERESUME #PF)
KB_ENTRY = 5  #: EENTER/ERESUME failed otherwise (#GP, an EPCM #PF on the TCS): SIGBUS
KB_PF = 6  #: the stream ends with a #PF reported to the runtime (the VMA or the EPCM
#: refuses the access at ``tc[TC_I]``): ``AccessOutcome.pf_error``
KB_SIGBUS = 7  #: ``sgx_vma_fault`` would SIGBUS (no page entry without SGX2, the VMA
#: asks more than ``vm_max_prot_bits``)
KB_EAUG = 8  #: SGX2 and no page entry: ``sgx_encl_eaug_page``
KB_SECS_LOAD = 9  #: the SECS is evicted: ``sgx_encl_load_secs``' ELDU
KB_ENOMEM = 10  #: no free page and nothing reclaimable: -ENOMEM, SIGBUS
KB_ELDU = 11  #: ELDU would fail (MAC, version, PCMD): -EFAULT, the WARN, SIGBUS
KB_WAKE = 12  #: the thread alone: the allocation would wake ksgxd (``wake_ksgxd``)
KB_TOP = 13  #: ``tstate.TC_HOOK``: the thread at its loop top, for Python to go on from
#: the EACCEPT loop (``tstate.MODE_EACCEPT``): the leaf would not return 0 - the thread
#: inside at the page, where ``enclu_on_page`` runs it in Python (PATHS.md E1)
KB_LEAF = 14
#: the MODIFY_TYPES loop (``tstate.MODE_TRIM``): its page under ``encl->lock``, nothing of
#: it applied, where Python's ``page_locked`` goes on (a page not present, a type or an
#: EMODT the core does not take, an ETRACK or IPI the regime excludes; PATHS.md M2-M3)
KB_PAGE = 15
#: the ADD_PAGES loop (``tstate.MODE_ADD``): ``sgx_encl_grow``'s VA page finds the free list
#: empty, the page's own EPC page allocated (``tc[TC_PAGE]``): Python's
#: ``kernel.ioctl_add._add_page_rest`` goes on from the grow (its allocation's reclaim, or
#: -ENOMEM; session ``addrun``)
KB_GROW = 16
#: the parked NOPAGE flood (``C_FLOOD``) with the thread served by SimPy: its retry would
#: park, and the park is Python's (``EnclaveThread.parks``; session ``uflood``)
KB_PARK = 17
KB_NAMES = (
    "none", "SECS eviction", "enclave release", "outside the regime", "TCS fault",
    "entry fault", "#PF to the runtime", "SIGBUS", "EAUG", "SECS load", "ENOMEM",
    "ELDU failure", "ksgxd wake-up", "loop top", "EACCEPT failure", "MODIFY_TYPES page",
    "ADD_PAGES VA page", "NOPAGE park",
)  # fmt: skip

#: ``warn`` kinds: which leaf's WARN the Python side appends (``encls.encls_warn``)
W_EBLOCK = 0
W_ETRACK = 1
W_EWB = 2

KState = namedtuple(
    "KState",
    (
        # the global scalars, the enclave's (``ENCLAVE_COLUMNS``), and the shared arrays
        "kc ke cnt ku rc batch ft warn "
        # EPC pages (``EpcPages``), the LRU and free lists (``PageLinks``); ``epc_flags`` and
        # ``owner_index`` are one array, ``EpcPages.owner_flags`` (index << OWNER_SHIFT | flags)
        "epc_prev epc_next epc_ends epc_flags owner_encl owner_index free_row "
        # the enclave's pages (``EnclPages``) and VA pages (``VaIds``, ``VaPageList``)
        "pflags desc va_epc_of va_used va_prev va_next va_ends "
        # the EPCM (``Epcm``) and the CPU's VA versions (``VaPages``)
        # (ENCLAVESECS/ENCLAVEADDRESS are the owner's: ``encls.epcm_secs_is_mine``)
        "eflags bepoch etag vp_epc vp_row vp_blocks "
        # the backing store (``EnclaveBacking`` and its ``compiled()`` rows)
        "b_present b_odd b_chunk_row b_contents b_mac b_flags b_high_row b_high "
        "b_pcmd_live b_pcmd_kept b_pcmd_gen "
        # sealing (``tag_sealing``): keys and scratch; ``bscr`` 24 bytes for a record
        "keys sh sm bscr "
        # the deferred seal (DESIGN.md item 4): one bit per record of the file, set while
        # the record is one the core wrote and nobody sealed yet; the indices so marked and
        # their count (``driver/unsealed.py``: the backing file's, shared by its KStates)
        "dmark dlist dn"
    ),
)
KState.__doc__ = "The arrays of one driver call (module docstring); numba takes it as one argument."

#: The machines take one ``KState`` per enclave slot, a tuple of ``N_SLOTS`` (numba's
#: ``UniTuple(KState, 2)``), and pick one with ``cosim.borrow.member_at`` (PATHS.md "Two
#: enclaves in the regime", decision item 1): the slots' global fields are the same arrays,
#: their enclave fields (``ke``, the enclave's own arrays) their own. With one enclave slot 1
#: is slot 0's ``KState`` again, never selected: one compiled signature for one and two.
N_SLOTS = 2


def slots(ks: KState, other: KState | None = None) -> tuple[KState, KState]:
    """The machines' tuple of slots: ``ks`` in slot 0, ``other`` (or ``ks`` again) in 1."""
    return (ks, ks if other is None else other)


#: Deferred sealing (DESIGN.md item 4, decided 2026-11-26, issue 9 session ``fastseal``;
#: lazy since session ``lazyseal``). EWB on the core does not seal: the record goes into the
#: backing store's row with the content tag in plaintext where the contents go and the VA
#: slot's version where the MAC's first 8 bytes go (the flags as EWB writes them), its bit
#: is set in ``dmark`` and its index appended to ``dlist`` (``dn`` entries used). ELDU of a
#: marked record skips the MAC (``eldu.eldu_check``): the core wrote it and no Python code
#: read or wrote it since (that would have sealed it), so the reference's MAC check would
#: pass exactly when the slot's version is the one EWB drew - the one compared - and give
#: the tag back. The marks outlive the call: ``dmark``/``dlist``/``dn`` are the backing
#: file's (``driver/unsealed.py``, ``EnclaveBacking.unsealed``), and the file seals every
#: marked record in place (``ops.seal_batch.seal_marked``, the bytes EWB writes) when
#: Python first reads or writes one of them (``EnclaveBacking.sealed_at``: ``lookup``,
#: ``store``, ``truncate``, ``tamper``, copies). Until session ``lazyseal`` every fold
#: sealed them (``bridge.fold_kernel``): most were loaded again by a later call or never
#: read. A record the core did not write, or one Python touched since, is checked inline.
#: A call that raises part-way (``stream``'s ``RuntimeError``, which only a defect of the
#: hand-back reaches) leaves its marked records as any call does: sealed when read.
#: Why the helpers taking a ``KState`` are ``inline="always"`` (``encls``, ``ksgxd``): the
#: state machine is compiled with numba's reference counting on (it indexes typed lists),
#: and a call that passes the tuple increfs and decrefs each of its ~45 arrays. Measured on
#: ``benchmarks/driver_ksgxd.py`` (6,005 pages): ~4.5 us of compiled time per page written
#: back with the helpers as calls, of which the seal is ~0.8 us.


# -- the free timeline's points (``ft``), written by the machines -------------------------
@core_jit(inline="always")
def ft_full(ks):  # type: ignore[no-untyped-def]
    """No room for one more point of the free timeline: the call stops for Python's fold
    (``SVC_FT_FULL``, set here; the caller records its pc and returns ``R_SVC``). Asked
    before the step that records one, so a step never stops half applied."""
    kc = ks.kc
    if kc[K_FT_N] >= ks.ft.shape[0]:
        kc[K_SVC] = SVC_FT_FULL
        return True
    return False


@core_jit(inline="always")
def ft_record(ks, now):  # type: ignore[no-untyped-def]
    """``sgx_nr_free_pages`` changed (an allocation or a free): the point ``(now,
    nr_free)`` of ``Sgx.free_timeline``, folded by ``bridge`` (``Timeline.record_many``:
    the record rule is applied there). The one statement of the four machines' points
    (``vma_fault``, ``reclaim``, ``remove``, ``add``; session ``fixes``)."""
    kc = ks.kc
    n = kc[K_FT_N]
    ks.ft[n, 0] = now
    ks.ft[n, 1] = kc[K_NR_FREE]
    kc[K_FT_N] = n + 1
