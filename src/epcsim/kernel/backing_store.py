"""The host's backing files, one per enclave: ``system.backing`` (spec §3.1, §7).

``sgx_encl_create`` gives each enclave its own shmem file (``encl->backing``) and the
enclave's release drops it (``fput``); this is the set of them, by enclave id, with what
tests and attack scenarios use on untrusted memory: read a record, rewrite it in place.
What one file holds and how (records, PCMD pages, truncation, the reclaimer's pins) is
``backing.py``'s ``EnclaveBacking``.

Why a module of its own: the file's format and the kernel's rules on it are one concept
(``backing.py``), the per-system collection another; split by session ``tidy`` when
``backing.py`` passed 500 lines, no code changed.
"""

from __future__ import annotations

from epcsim.kernel.backing import BackingRecord, EnclaveBacking


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
        self.files[encl_id].tamper(index, contents, pcmd)

    @property
    def bytes_used(self) -> int:
        return sum(f.bytes_used for f in self.files.values())
