"""The stale pokes a move sets aside (``fast/cosim/transfer_pokes.py``, session ``pokes``),
at the level of their partition and queue: which go to the core, which stay aside, and
that the ones put back leave SimPy's queue a heap that pops every entry in key order.

The end-to-end checks (reference == fast == fast with the core after every slice, with
pokes set aside, kept and handed to the core) are ``test_threads_user.py``'s; these are the
rules that hold whatever a drawn run happens to meet: in those runs a stale poke before the
horizon shares its instant with a live one (the spinners all arm the next tick), so
leaving it out of the core would change nothing there, and the aside entries come back
above every queued one, so a missing ``heapify`` would not show (both tried by hand).
"""

from __future__ import annotations

import heapq
from functools import partial
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from epcsim.fast.cosim import transfer_pokes as pokes
from epcsim.fast.cosim.state import EV_POKE, KEY_SHIFT


class _Ev:
    """A queued poke: a callback list holding ``partial(fire, task, rec, gen)``."""

    def __init__(self, task: str, gen: int) -> None:
        self.callbacks = [partial(_fire, task, object(), gen)]


def _fire(task: str, rec: object, gen: int, _ev: Any = None) -> None:
    raise AssertionError("not called")


# (time, priority, task, gen) per poke; eids twice the draw's positions (unique, as SimPy's)
_POKES = st.lists(
    st.tuples(st.integers(0, 40), st.sampled_from([0, 1]), st.integers(0, 3), st.integers(0, 5)),
    max_size=40,
)


@given(
    drawn=_POKES,
    kept_mask=st.lists(st.booleans(), min_size=40, max_size=40),
    # an until event's key: its eid no poke's (odd, the pokes' even)
    horizon=st.none()
    | st.tuples(
        st.integers(0, 40), st.sampled_from([0, 1]), st.integers(-1, 40).map(lambda x: 2 * x + 1)
    ),
    others=_POKES,
)
def test_stale_pokes_after_the_horizon_stay_aside_and_come_back_in_order(
    drawn: list[tuple[int, int, int, int]],
    kept_mask: list[bool],
    horizon: tuple[int, int, int] | None,
    others: list[tuple[int, int, int, int]],
) -> None:
    """``set_aside``: exactly the stale pokes whose key orders after ``horizon`` stay out
    of the core (none without a horizon); every other becomes the core's row ``(time,
    priority << KEY_SHIFT | eid, EV_POKE | task << 4 | -1 << 16)``, a kept one's task read
    from its (``keep``-replaced) callback. ``keep`` replaces the new ones' callbacks by
    the ``STALE`` record's, gen -1; ``put_back`` (once) into a heap of other entries leaves
    a heap whose pops are every entry in key order."""
    tasks = ["t0", "t1", "t2", "t3"]
    tix = {name: i for i, name in enumerate(tasks)}
    entries = [(time, prio, 2 * k, _Ev(tasks[t], g)) for k, (time, prio, t, g) in enumerate(drawn)]
    sv: Any = SimpleNamespace(aside=[], aside_ids=set(), aside_out=False)
    kept = [e for e, k in zip(entries, kept_mask, strict=False) if k]
    pokes.keep(sv, [], kept)  # the last move's: set aside, callbacks replaced
    for e in kept:
        assert e[3].callbacks[0].args[1:] == (pokes.STALE, -1)
    stale = [(e, tix[e[3].callbacks[0].args[0]]) for e in entries if e not in kept]
    rows: list[Any] = []
    still, new = pokes.set_aside(kept, stale, horizon, rows, tix)
    after = {id(e[3]) for e in entries if horizon is not None and e[:3] > horizon}
    assert {id(e[3]) for e in still + new} == after
    assert [e for e in still + new if e not in kept] == new
    want = sorted(
        (
            e[0],
            (e[1] << KEY_SHIFT) | e[2],
            EV_POKE | (tix[e[3].callbacks[0].args[0]] << 4) | (-1 << 16),
        )
        for e in entries
        if id(e[3]) not in after
    )
    assert sorted(rows) == want
    pokes.keep(sv, still, new)
    assert sv.aside_ids == after and sv.aside_out
    heap = [(time, prio, 1000 + i, object()) for i, (time, prio, _, _) in enumerate(others)]
    heapq.heapify(heap)
    pokes.put_back(sv, heap)
    pokes.put_back(sv, heap)  # once: a second move back has nothing aside to put back
    assert len(heap) == len(others) + len(after)
    popped = [heapq.heappop(heap)[:3] for _ in range(len(heap))]
    assert popped == sorted(popped)
