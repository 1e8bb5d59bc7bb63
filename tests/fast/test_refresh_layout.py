"""``bridge.refresh_layout``: a served step's ``KState`` follows the arrays Python replaced.

Between two served steps Python may *replace* one of the big arrays the machines write in
place (an EAUG grows ``encl.pages``, a new VA page grows ``encl.va_ids``, a backing chunk's
row grows the store's arrays); ``refresh_layout`` finds such a change by identity and
rebuilds the ``KState`` with the new objects only then. Session ``slice`` found that a
mutant comparing with ``any`` instead of ``all`` survived every stream test: when only
some fields change, it keeps the stale arrays, and the machine would then write into an
array Python no longer reads. These tests change any subset of the fields.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_core_cases import build_enclave

import epcsim
from epcsim.fast.driver import bridge
from epcsim.fast.driver.bridge import BIG_FIELDS, _check_regime, _kernel_state, refresh_layout


def _built() -> tuple[epcsim.System, object, object]:
    system, e, _ = build_enclave("fast", 2, 256, 2, True, 2)  # pages swapped, ksgxd asleep
    assert e.access_pages(np.arange(1, 9)).ok  # the SECS and TCS resident again
    system.machine.env.run()
    encl, secs = _check_regime(system)
    return system, encl, secs


_SYSTEM = _built()  # built once: the tests only read it and patch ``_big_values``


def _nblocks(system: epcsim.System) -> int:
    return len(system.cpu.va.blocks)


def test_nothing_replaced_keeps_the_same_state() -> None:
    system, encl, secs = _SYSTEM
    ks = _kernel_state(system, encl, secs)
    ks2, n = refresh_layout(system, encl, ks, _nblocks(system))
    assert ks2 is ks and n == _nblocks(system)


@settings(max_examples=25, deadline=None)
@given(st.sets(st.sampled_from(range(len(BIG_FIELDS))), min_size=1))
def test_any_subset_of_replaced_arrays_is_taken(replaced: set[int]) -> None:
    system, encl, secs = _SYSTEM
    ks = _kernel_state(system, encl, secs)
    live = list(bridge._big_values(system, encl))
    for i in replaced:
        live[i] = np.array(live[i], copy=True)  # what np.resize/np.concatenate do: a new object
    orig = bridge._big_values
    bridge._big_values = lambda s, e: tuple(live)  # type: ignore[assignment]
    try:
        ks2, _ = refresh_layout(system, encl, ks, _nblocks(system))
    finally:
        bridge._big_values = orig  # type: ignore[assignment]
    for i, name in enumerate(BIG_FIELDS):
        assert getattr(ks2, name) is live[i], name
    assert ks2.kc is ks.kc and ks2.ke is ks.ke  # the small columns are not rebuilt


def test_a_real_replacement_is_found() -> None:
    """The mapping itself: ``encl.pages.flags`` replaced as an EAUG's growth does."""
    system, encl, secs = _built()
    ks = _kernel_state(system, encl, secs)
    assert ks.pflags is encl.pages.flags
    encl.pages.flags = np.array(encl.pages.flags, copy=True)
    ks2, _ = refresh_layout(system, encl, ks, _nblocks(system))
    assert ks2.pflags is encl.pages.flags and ks2.desc is ks.desc
