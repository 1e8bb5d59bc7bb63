"""The SGX processor: ``SgxCpu`` = the state of :mod:`epcsim.isa.core` plus every leaf.

Pure and synchronous: no OS policy and no time. Leaves return what the kernel's
``__encls_ret_N`` wrappers return: 0, a positive ``SgxReturn`` code, or
``encls_fault(trap)`` where the real instruction raises #GP/#PF. A failing leaf changes no
state. ENCLS leaves are in :mod:`epcsim.isa.encls` (build and removal),
:mod:`epcsim.isa.paging` (EBLOCK/ETRACK/EWB/ELDU) and :mod:`epcsim.isa.edmm` (SGX2); ENCLU
leaves in :mod:`epcsim.isa.enclu`.
"""

from __future__ import annotations

from epcsim.isa.encls import EnclsMixin
from epcsim.isa.enclu import EncluMixin


class SgxCpu(EnclsMixin, EncluMixin):
    """One SGX package: ``SgxCpu(nr_pages, nr_lps=1, content_mode="tag", seed=0)``."""
