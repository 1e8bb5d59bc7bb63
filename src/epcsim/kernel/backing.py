"""The enclave backing store: shmem, untrusted (spec §3.1, §7).

Each enclave has a "SGX backing" shmem file of ``size + PAGE_SIZE + (size+PAGE_SIZE)/32``
bytes: page index ``i`` holds the encrypted contents of enclave page ``i``, index
``size/4096`` the SECS, and from ``size + 4096`` a 128-byte PCMD per page, 32 per PCMD page.

The model keeps one ``BackingRecord`` per evicted page - exactly what sits in untrusted
memory - and exposes it raw: tests and attacker scenarios may read, overwrite, swap or replay
``contents`` and ``pcmd`` freely (``system.backing``). Nothing here is trusted; ELDU
(``epcsim.isa``) decides whether a record is genuine. Which VA slot holds the version is
kernel memory (``encl_page->desc``/``va_page``) and is shown here for inspection only.

PCMD-page accounting follows the kernel: ELDU zeroes the page's PCMD and truncates the PCMD
page once all 32 entries are zero and no page sharing it is being reclaimed
(``reclaimer_writing_to_pcmd``); the contents page is truncated after every ELDU.
"""

from __future__ import annotations

from dataclasses import dataclass

from epcsim.arch import PAGE_SIZE, PCMD_SIZE, PCMDS_PER_PAGE


@dataclass
class BackingRecord:
    """One evicted page in untrusted memory."""

    contents: bytes  # the contents page (ciphertext, or the sealed tag in mac/tag modes)
    pcmd: bytes  # the 128-byte PCMD
    va_page: int = -1  # kernel bookkeeping shown for inspection: EPC index of the VA page
    va_slot: int = -1  # and the slot holding this record's version


class EnclaveBacking:
    """The shmem file of one enclave."""

    def __init__(self, encl_id: int, size: int):
        self.encl_id = encl_id
        self.size = size
        self.secs_index = size // PAGE_SIZE
        self.records: dict[int, BackingRecord] = {}
        self._pcmd_pages: dict[int, int] = {}  # PCMD page index -> non-zero PCMD entries

    @property
    def file_size(self) -> int:
        encl_size = self.size + PAGE_SIZE
        return encl_size + (encl_size >> 5)

    def pcmd_page_index(self, index: int) -> int:
        """PCMD page of page ``index``: ``size/4096 + 1 + index/32`` (spec §3.1)."""
        return self.secs_index + 1 + index // PCMDS_PER_PAGE

    def pcmd_offset(self, index: int) -> int:
        return (index % PCMDS_PER_PAGE) * PCMD_SIZE

    def store(self, index: int, record: BackingRecord) -> None:
        """The reclaimer's EWB output lands here (``sgx_encl_ewb`` on pinned shmem pages)."""
        if index not in self.records:
            pidx = self.pcmd_page_index(index)
            self._pcmd_pages[pidx] = self._pcmd_pages.get(pidx, 0) + 1
        self.records[index] = record

    def lookup(self, index: int) -> BackingRecord | None:
        """``sgx_encl_lookup_backing``: what ELDU will read (possibly tampered)."""
        return self.records.get(index)

    def truncate(self, index: int, pcmd_busy: bool = False) -> None:
        """After ELDU, successful or not: drop the contents page and zero this page's PCMD;
        the PCMD page goes too once all its entries are zero, unless ``pcmd_busy``
        (``reclaimer_writing_to_pcmd``: a neighbour's EWB is about to write into it)."""
        if self.records.pop(index, None) is None:
            return
        pidx = self.pcmd_page_index(index)
        left = self._pcmd_pages.get(pidx, 0) - 1
        if left > 0 or pcmd_busy:
            self._pcmd_pages[pidx] = max(left, 0)
        else:
            self._pcmd_pages.pop(pidx, None)

    @property
    def bytes_used(self) -> int:
        """Shmem bytes held: one contents page per record plus the PCMD pages kept."""
        return (len(self.records) + len(self._pcmd_pages)) * PAGE_SIZE


class BackingStore:
    """All enclaves' backing files: ``system.backing``. Untrusted memory."""

    def __init__(self) -> None:
        self.files: dict[int, EnclaveBacking] = {}

    def create(self, encl_id: int, size: int) -> EnclaveBacking:
        f = EnclaveBacking(encl_id, size)
        self.files[encl_id] = f
        return f

    def drop(self, encl_id: int) -> None:
        """``fput(encl->backing)`` at release: the whole file goes."""
        self.files.pop(encl_id, None)

    def __getitem__(self, encl_id: int) -> EnclaveBacking:
        return self.files[encl_id]

    def record(self, encl_id: int, index: int) -> BackingRecord | None:
        f = self.files.get(encl_id)
        return None if f is None else f.lookup(index)

    def tamper(
        self, encl_id: int, index: int, *, contents: bytes | None = None, pcmd: bytes | None = None
    ) -> None:
        """Overwrite a record's raw bytes in place (an attacker with access to RAM/swap)."""
        rec = self.files[encl_id].records[index]
        if contents is not None:
            rec.contents = bytes(contents)
        if pcmd is not None:
            rec.pcmd = bytes(pcmd)

    @property
    def bytes_used(self) -> int:
        return sum(f.bytes_used for f in self.files.values())
