"""Trace replay input: a CSV of page accesses, or libCacheSim's binary ``oracleGeneral``.

**CSV** (``time,enclave,page,op``, header optional, ``#`` starts a comment): ``time`` is an
integer that orders the accesses, ``enclave`` names the enclave, ``page`` is the page index
from the enclave's base (offset // 4096), ``op`` is ``r`` or ``w`` (``read``/``write``).
Errors name the row, counting lines that are not comments (the header is row 1).

**oracleGeneral** (the format of the public cache traces libCacheSim distributes; decompress
``.zst`` files first): packed little-endian records of 24 bytes,
``uint32 timestamp, uint64 obj_id, uint32 obj_size, int64 next_access_vtime``. The file is
memory-mapped and read in chunks with a NumPy structured dtype, so only the requests kept
(``limit``) and their page streams are held in memory. All requests become reads of one
enclave named ``trace``; the timestamp and ``next_access_vtime`` are not used.

Page mapping of oracleGeneral (an object cache has objects, the EPC has pages):

* an object of ``obj_size`` bytes covers ``ceil(obj_size / 4096)`` consecutive pages (at
  least 1, at most ``max_object_pages``, default 256 = 1 MiB); a request touches all of
  them in order;
* ``mapping="dense"`` (default): objects get pages in order of first appearance, packed one
  after the other, with the size seen first. No two objects share a page, so the enclave's
  footprint is exactly the trace's footprint in pages;
* ``mapping="hash"``: an object starts at ``splitmix64(obj_id) mod n_pages`` of an enclave
  of ``n_pages`` pages (wrapping at the end). Unrelated objects may share pages, like a
  hashed heap; useful to replay a huge trace into a fixed-size enclave.

Replay is closed-loop: the order of requests is kept, their times are not (each thread
issues its next access as soon as the previous one completes), so the simulated run time
is what the paging costs the stream. With several enclaves in a CSV, each is replayed by
its own thread, concurrently.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from epcsim.arch import PAGE_SIZE

#: one oracleGeneral request (24 bytes, packed, little-endian)
ORACLE_GENERAL = np.dtype(
    [("time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"), ("next_access_vtime", "<i8")]
)
assert ORACLE_GENERAL.itemsize == 24
FORMATS = ("csv", "oracleGeneral")
MAPPINGS = ("dense", "hash")
_CHUNK = 1 << 20
#: largest page index a CSV may name (ELRANGE of 256 GiB); the model keeps per-page arrays
MAX_PAGE = (1 << 26) - 1


class TraceError(ValueError):
    """A bad trace: ``FILE: where: reason``."""

    def __init__(self, path: str | Path, where: str, reason: str):
        self.path, self.where, self.reason = str(path), where, reason
        super().__init__(f"{path}: {where}: {reason}" if where else f"{path}: {reason}")


@dataclass
class TraceStreams:
    """Page streams per enclave, ready to replay."""

    path: str
    format: str
    enclaves: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (pages int64, writes bool)
    requests: int
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def accesses(self) -> int:
        return sum(p.size for p, _ in self.enclaves.values())


def detect_format(path: str | Path) -> str:
    """``csv`` for ``*.csv``/``*.txt``, else ``oracleGeneral`` (its files carry that name)."""
    name = Path(path).name.lower()
    return "csv" if name.endswith((".csv", ".txt")) else "oracleGeneral"


# -- CSV ----------------------------------------------------------------------------------
_HEADER = ["time", "enclave", "page", "op"]


def _int_column(path, col: np.ndarray, name: str, first_row: int) -> np.ndarray:
    col = np.char.strip(col)
    bad = ~np.char.isdigit(col)
    if bad.any():
        i = int(np.argmax(bad))
        raise TraceError(
            path, f"row {first_row + i}, {name}", f"expected a non-negative integer, got {col[i]!r}"
        )
    return col.astype(np.int64)


def read_csv(path: str | Path, limit: int | None = None) -> TraceStreams:
    """Read a ``time,enclave,page,op`` CSV (see the module docstring)."""
    try:
        with warnings.catch_warnings():  # comment-only lines: NumPy notes they are skipped
            warnings.simplefilter("ignore", UserWarning)
            raw = np.loadtxt(path, delimiter=",", dtype=str, comments="#", ndmin=2)
    except OSError as e:
        raise TraceError(path, "", f"cannot read the file: {e.strerror or e}") from None
    except ValueError as e:
        raise TraceError(path, "", f"not a CSV of time,enclave,page,op: {e}") from None
    if raw.size == 0:
        raise TraceError(path, "", "the trace has no accesses")
    if raw.shape[1] != 4:
        raise TraceError(path, "columns", f"expected 4 (time,enclave,page,op), got {raw.shape[1]}")
    first_row = 1
    if not raw[0, 0].strip().isdigit():
        header = [h.strip().lower() for h in raw[0]]
        if header != _HEADER:
            raise TraceError(
                path, "header", f"expected time,enclave,page,op, got {','.join(header)}"
            )
        raw = raw[1:]
        first_row = 2
    if limit is not None:
        raw = raw[:limit]
    if raw.shape[0] == 0:
        raise TraceError(path, "", "the trace has no accesses")
    time = _int_column(path, raw[:, 0], "time", first_row)
    pages = _int_column(path, raw[:, 2], "page", first_row)
    big = pages > MAX_PAGE
    if big.any():
        i = int(np.argmax(big))
        raise TraceError(
            path,
            f"row {first_row + i}, page",
            f"{pages[i]} is past the largest page index"
            f" {MAX_PAGE} (a 256 GiB enclave); is it a byte address? use offset // 4096",
        )
    names = np.char.strip(raw[:, 1])
    empty = np.char.str_len(names) == 0
    if empty.any():
        raise TraceError(path, f"row {first_row + int(np.argmax(empty))}, enclave", "empty name")
    ops = np.char.lower(np.char.strip(raw[:, 3]))
    writes = np.isin(ops, ["w", "write"])
    bad = ~(writes | np.isin(ops, ["r", "read"]))
    if bad.any():
        i = int(np.argmax(bad))
        raise TraceError(path, f"row {first_row + i}, op", f"expected r or w, got {raw[i, 3]!r}")
    order = np.argsort(time, kind="stable")
    names, pages, writes = names[order], pages[order], writes[order]
    encls = {}
    for name in dict.fromkeys(names.tolist()):  # first-appearance order
        m = names == name
        encls[str(name)] = (pages[m], writes[m])
    return TraceStreams(str(path), "csv", encls, int(time.size), {"mapping": "page index"})


# -- oracleGeneral ------------------------------------------------------------------------
def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a fixed, well-mixed hash of 64-bit ids."""
    z = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class DenseMap:
    """obj_id -> first page, objects packed in order of first appearance (incremental)."""

    def __init__(self) -> None:
        self.ids = np.empty(0, dtype=np.uint64)
        self.start = np.empty(0, dtype=np.int64)
        self.npages = np.empty(0, dtype=np.int64)
        self.next_page = 0

    def lookup(self, ids: np.ndarray, npages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        uniq, first = np.unique(ids, return_index=True)
        pos = np.searchsorted(self.ids, uniq)
        known = pos < self.ids.size
        known[known] = self.ids[pos[known]] == uniq[known]
        new_first = np.sort(first[~known])  # new objects in order of appearance
        if new_first.size:
            n_new = npages[new_first]
            starts = self.next_page + np.cumsum(n_new) - n_new
            self.next_page += int(n_new.sum())
            all_ids = np.concatenate([self.ids, ids[new_first]])
            order = np.argsort(all_ids, kind="stable")
            self.ids = all_ids[order]
            self.start = np.concatenate([self.start, starts])[order]
            self.npages = np.concatenate([self.npages, n_new])[order]
        idx = np.searchsorted(self.ids, ids)
        return self.start[idx], self.npages[idx]


def _expand(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``[s, s+1, .., s+c-1]`` for each (s, c), concatenated, without a Python loop."""
    total = int(counts.sum())
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + offsets


def read_oracle_general(
    path: str | Path,
    limit: int | None = None,
    mapping: str = "dense",
    n_pages: int | None = None,
    max_object_pages: int = 256,
) -> TraceStreams:
    """Read an oracleGeneral trace into one page stream (see the module docstring)."""
    p = Path(path)
    if mapping not in MAPPINGS:
        raise TraceError(path, "map", f"expected one of {', '.join(MAPPINGS)}, got {mapping!r}")
    if mapping == "hash" and not n_pages:
        raise TraceError(path, "enclave-size", "needed with the hash mapping")
    if max_object_pages < 1:
        raise TraceError(path, "max-object-pages", "must be at least 1")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise TraceError(path, "", f"cannot read the file: {e.strerror or e}") from None
    if size == 0 or size % ORACLE_GENERAL.itemsize:
        raise TraceError(
            path,
            "",
            f"{size} bytes is not a whole number of 24-byte oracleGeneral records"
            " (is it still zstd-compressed?)",
        )
    records = np.memmap(p, dtype=ORACLE_GENERAL, mode="r")
    n = records.shape[0] if limit is None else min(limit, records.shape[0])
    dense = DenseMap()
    parts = []
    for lo in range(0, n, _CHUNK):
        chunk = np.asarray(records[lo : min(n, lo + _CHUNK)])
        ids = chunk["obj_id"]
        npages = np.clip(
            (chunk["obj_size"].astype(np.int64) + PAGE_SIZE - 1) // PAGE_SIZE, 1, max_object_pages
        )
        if mapping == "dense":
            starts, counts = dense.lookup(ids, npages)
            parts.append(_expand(starts, counts))
        else:
            assert n_pages is not None
            starts = (splitmix64(ids) % np.uint64(n_pages)).astype(np.int64)
            parts.append(_expand(starts, np.minimum(npages, n_pages)) % n_pages)
    del records
    pages = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    if pages.size == 0:
        raise TraceError(path, "", "the trace has no requests")
    notes = {
        "mapping": mapping,
        "max_object_pages": max_object_pages,
        "objects": int(dense.ids.size) if mapping == "dense" else None,
    }
    streams = {"trace": (pages, np.zeros(pages.size, dtype=np.bool_))}
    return TraceStreams(str(path), "oracleGeneral", streams, int(n), notes)


def read_trace(
    path: str | Path,
    fmt: str | None = None,
    limit: int | None = None,
    mapping: str = "dense",
    n_pages: int | None = None,
    max_object_pages: int = 256,
) -> TraceStreams:
    """Read a trace in ``fmt`` (default: from the file name)."""
    fmt = fmt or detect_format(path)
    if fmt.lower() == "csv":
        return read_csv(path, limit)
    if fmt.lower() == "oraclegeneral":
        return read_oracle_general(path, limit, mapping, n_pages, max_object_pages)
    raise TraceError(path, "format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")


def write_oracle_general(path: str | Path, obj_ids, obj_sizes, times=None) -> Path:
    """Write an oracleGeneral file (for tests and for converting small traces)."""
    ids = np.asarray(obj_ids, dtype=np.uint64)
    rec = np.zeros(ids.size, dtype=ORACLE_GENERAL)
    rec["obj_id"] = ids
    rec["obj_size"] = np.broadcast_to(np.asarray(obj_sizes, dtype=np.uint32), ids.shape)
    rec["time"] = np.arange(ids.size) if times is None else np.asarray(times, dtype=np.uint32)
    rec["next_access_vtime"] = -1
    p = Path(path)
    rec.tofile(p)
    return p
