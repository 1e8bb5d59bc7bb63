"""The shmem backing file: PCMD layout and truncation after ELDU (spec §3.1, §7)."""

from epcsim.arch import PAGE_SIZE
from epcsim.kernel.backing import BackingRecord, EnclaveBacking


def test_pcmd_layout_follows_the_kernel():
    f = EnclaveBacking(1, 64 * PAGE_SIZE)
    # 64 pages + SECS; PCMDs start right after the SECS page, 32 per page, 128 B each
    assert f.secs_index == 64
    assert f.pcmd_page_index(0) == 65 and f.pcmd_page_index(31) == 65
    assert f.pcmd_page_index(32) == 66 and f.pcmd_offset(33) == 128
    assert f.file_size == 65 * PAGE_SIZE + (65 * PAGE_SIZE >> 5)


def test_pcmd_page_is_truncated_when_empty_unless_the_reclaimer_writes_to_it():
    f = EnclaveBacking(1, 64 * PAGE_SIZE)
    for i in (0, 1, 40):
        f.store(i, BackingRecord(b"c", bytes(128)))
    assert f.bytes_used == 3 * PAGE_SIZE + 2 * PAGE_SIZE  # 3 contents + 2 PCMD pages
    f.truncate(0)
    assert f.bytes_used == 2 * PAGE_SIZE + 2 * PAGE_SIZE  # PCMD page 65 still has page 1
    f.truncate(1, pcmd_busy=True)  # a neighbour is BEING_RECLAIMED: keep the PCMD page
    assert f.bytes_used == PAGE_SIZE + 2 * PAGE_SIZE
    f.truncate(40)
    assert f.lookup(40) is None and f.bytes_used == PAGE_SIZE  # only the kept PCMD page
