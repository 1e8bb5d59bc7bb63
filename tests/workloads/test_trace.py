"""Trace readers: CSV and libCacheSim's oracleGeneral, and the documented page mapping."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epcsim.workloads import trace as tr
from epcsim.workloads.trace import (
    ORACLE_GENERAL,
    TraceError,
    read_csv,
    read_oracle_general,
    read_trace,
    write_oracle_general,
)


def test_oracle_general_record_is_24_packed_bytes():
    assert ORACLE_GENERAL.itemsize == 24
    assert [ORACLE_GENERAL.fields[n][1] for n in ORACLE_GENERAL.names] == [0, 4, 12, 16]


def test_csv_with_header_sorted_by_time_per_enclave(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("time,enclave,page,op\n# a comment line\n5,a,3,w\n1,b,7,r\n2,a,1,R\n2,a,2,write\n")
    s = read_csv(p)
    assert s.requests == 4 and list(s.enclaves) == ["b", "a"]  # first appearance in time
    pages, writes = s.enclaves["a"]
    assert pages.tolist() == [1, 2, 3] and writes.tolist() == [False, True, True]
    assert s.enclaves["b"][0].tolist() == [7]


def test_csv_without_header_and_limit(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("0,x,0,r\n1,x,1,r\n2,x,2,w\n")
    s = read_csv(p, limit=2)
    assert s.enclaves["x"][0].tolist() == [0, 1]


@pytest.mark.parametrize(
    "text, where",
    [
        ("time,enclave,page,op\n0,a,1,r\n1,a,x,r\n", "row 3, page"),
        ("time,enclave,page,op\n0,a,1,q\n", "row 2, op"),
        ("0,a,1,r\n-1,a,1,r\n", "row 2, time"),
        ("time,encl,page,op\n0,a,1,r\n", "header"),
        ("0,a,1\n", "columns"),
        ("0,a,4294967296,r\n", "row 1, page"),
    ],
)
def test_bad_csv_names_file_row_and_column(tmp_path, text, where):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(TraceError) as e:
        read_csv(p)
    assert str(e.value).startswith(f"{p}: {where}")


def test_dense_mapping_packs_objects_in_order_of_first_appearance(tmp_path):
    # object 7 (2 pages), 8 (1 page), 7 again, 9 (3 pages, capped at 2), 8 again
    p = write_oracle_general(
        tmp_path / "t.oracleGeneral.bin", [7, 8, 7, 9, 8], [8192, 100, 8192, 3 * 4096, 0]
    )
    s = read_oracle_general(p, max_object_pages=2)
    pages = s.enclaves["trace"][0].tolist()
    assert pages == [0, 1, 2, 0, 1, 3, 4, 2]
    assert s.notes["objects"] == 3 and not s.enclaves["trace"][1].any()  # all reads


@settings(max_examples=40, deadline=None)
@given(
    ids=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=300),
    chunk=st.integers(1, 64),
    data=st.data(),
)
def test_dense_mapping_properties_hold_across_chunks(tmp_path_factory, ids, chunk, data):
    sizes = data.draw(st.lists(st.integers(0, 5 * 4096), min_size=len(ids), max_size=len(ids)))
    path = write_oracle_general(tmp_path_factory.mktemp("t") / "x.bin", ids, sizes)
    whole = read_oracle_general(path).enclaves["trace"][0]
    old = tr._CHUNK
    tr._CHUNK = chunk
    try:
        chunked = read_oracle_general(path).enclaves["trace"][0]
    finally:
        tr._CHUNK = old
    assert np.array_equal(whole, chunked)
    # each object has one fixed run of pages (its first size), disjoint from the others
    first_size = {}
    for i, s in zip(ids, sizes, strict=True):
        first_size.setdefault(i, max(1, -(-s // 4096)))
    assert whole.size == sum(first_size[i] for i in ids)
    assert whole.max() + 1 == sum(first_size.values())  # packed: footprint = trace footprint
    runs, pos = {}, 0
    for i in ids:
        run = tuple(whole[pos : pos + first_size[i]].tolist())
        pos += first_size[i]
        assert runs.setdefault(i, run) == run
        assert list(run) == list(range(run[0], run[0] + len(run)))
    starts = sorted(r[0] for r in runs.values())
    assert len(set(starts)) == len(starts)


def test_hash_mapping_stays_inside_the_enclave(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 2**63, 5000, dtype=np.uint64)
    p = write_oracle_general(tmp_path / "h.bin", ids, rng.integers(1, 40_000, ids.size))
    pages = read_oracle_general(p, mapping="hash", n_pages=1000).enclaves["trace"][0]
    assert pages.min() >= 0 and pages.max() < 1000
    assert np.unique(pages).size > 900  # well spread
    with pytest.raises(TraceError, match="enclave-size"):
        read_oracle_general(p, mapping="hash")


def test_truncated_or_compressed_file_is_rejected(tmp_path):
    p = tmp_path / "t.oracleGeneral.zst"
    p.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(30))
    with pytest.raises(TraceError, match="24-byte"):
        read_trace(p)


def test_format_detection():
    assert tr.detect_format("a/b.csv") == "csv"
    assert tr.detect_format("cluster52.oracleGeneral.sample10") == "oracleGeneral"
    with pytest.raises(TraceError, match="format"):
        read_trace("x.csv", "parquet")


def test_libcachesim_reads_what_we_read(tmp_path):
    lcs = pytest.importorskip("libcachesim", reason="libcachesim (the bench extra) not installed")
    ids = [3, 2**40 + 1, 3, 17]
    sizes = [4096, 9000, 4096, 1]
    p = write_oracle_general(tmp_path / "x.oracleGeneral.bin", ids, sizes)
    reader = lcs.TraceReader(str(p), lcs.TraceType.ORACLE_GENERAL_TRACE)
    got = [(r.obj_id, r.obj_size) for r in reader]
    assert got == list(zip(ids, sizes, strict=True))
    rec = np.fromfile(p, dtype=ORACLE_GENERAL)
    assert rec["obj_id"].tolist() == ids and rec["obj_size"].tolist() == sizes
