"""The per-page byte budget of issue 9 (BENCHMARKS.md "What changed"): a layout change that
widens a field shows up here, not only in the benchmarks."""

import epcsim
from epcsim.arch import PAGE_SIZE


def test_bytes_per_page_of_each_structure():
    n = 4096
    system = epcsim.System(epc=n * PAGE_SIZE, cpus=1, seed=1)
    # EPCM: flags 2, BEPOCH 2, tag 8; SECS and ENCLAVEADDRESS derived from the owner
    assert system.cpu.epcm.nbytes() == 12 * n
    assert system.sgx.epc.nbytes() == 15 * n  # sgx_epc_page: flags, owner 2 + 4, list 8
    system.create_enclave("64K").add_pages(0, "64K")
    assert not system.cpu.epcm.aside  # every page built reads its SECS and address derived
    encl = system.create_enclave(f"{n * PAGE_SIZE}").encl
    assert encl.elrange_nbytes() == 6 * n  # sgx_encl_page: desc 4, flags 1, prot 1
    f = system.backing[encl.id]
    assert f.present.nbytes == (n + 1 + 7) // 8  # one presence bit per page of the file
