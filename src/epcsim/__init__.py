"""epcsim: a faithful, fast model of how Linux manages Intel SGX enclave memory (the EPC).

Layers (``design.md``): :mod:`epcsim.isa` (the CPU: EPCM and ENCLS/ENCLU leaves),
:mod:`epcsim.engine` (simulated time and CPUs on SimPy), :mod:`epcsim.kernel` (what
``arch/x86/kernel/cpu/sgx/`` does), :mod:`epcsim.user` (enclave threads) and the front ends.

    import epcsim
    system = epcsim.System(epc="256M", cpus=4, direct_reclaim=True, seed=1)
    encl = system.create_enclave(size="1G")

Names are imported on first use so that light modules (units, workloads, traces) load fast.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "System": "epcsim.system",
    "Enclave": "epcsim.system",
    "EncluResult": "epcsim.system",
    "IoctlResult": "epcsim.kernel.ioctl",
    "SgxEnclaveRun": "epcsim.user.vdso",
    "IoctlError": "epcsim.user.enclave_ioctl",
    "Costs": "epcsim.engine.costs",
    "EPC_PRESETS": "epcsim.units",
    "parse_size": "epcsim.units",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'epcsim' has no attribute {name!r}")
