"""The SGX hardware model: EPCM, ENCLS and ENCLU leaves, EWB/ELDU crypto, MRENCLAVE.

Pure and synchronous, no OS policy (design.md, layer 1). See ``README.md`` beside this file
for the SDM behaviour the model had to assume.
"""

from epcsim.isa.core import PageInfo
from epcsim.isa.cpu import SgxCpu
from epcsim.isa.epcm import CONTENT_MODES, Epcm
from epcsim.isa.sealing import SealedPage
from epcsim.isa.secs import Secs, SecsState
from epcsim.isa.sigstruct import Sigstruct

__all__ = [
    "CONTENT_MODES",
    "Epcm",
    "PageInfo",
    "SealedPage",
    "Secs",
    "SecsState",
    "SgxCpu",
    "Sigstruct",
]
