"""The compiled entry points ``StreamCore`` calls are the process's (``stream_entry.ENTRIES``,
session ``demo6``): a later ``System`` types no argument again (``jit.entry_point``), and
the entry point each call takes is numba's compiled overload for that call's arguments'
types exactly - the key (the function and its arguments' ``_layout``) decides it, whatever
``System`` first made it. Before, each ``StreamCore`` kept its own table: every run of
``epcsim demo``'s 40 typed its ``KState`` tuples again (~4 ms a run).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from epcsim import demo
from epcsim.cli import flip_configs
from epcsim.fast.driver import stream_entry


def _checked(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[Any]]:
    """Spies on ``stream_entry``: the functions ``entry_point`` was asked for, and each
    entry point a call took, checked against numba's overload for its arguments."""
    typed: list[Any] = []
    took: list[Any] = []
    real = stream_entry.entry_point

    def entry_point(fn: Any, *args: Any) -> Any:
        typed.append(fn)
        return real(fn, *args)

    def overload(fn: Any, args: tuple[Any, ...]) -> Any:
        return fn.overloads[tuple(fn.typeof_pyval(a) for a in args)].entry_point

    drive, machine = stream_entry.EntryPoints.drive, stream_entry.EntryPoints.machine

    def checked_drive(self: Any, co: Any, kt: Any, ts: Any, pending: int) -> int:
        r = drive(self, co, kt, ts, pending)
        lay = stream_entry._layout
        ep = stream_entry.ENTRIES[(stream_entry.drive, lay(co), self._slots_layout(kt), lay(ts))]
        assert ep is overload(stream_entry.drive, (co, kt, ts, pending))
        took.append(ep)
        return r

    def checked_machine(self: Any, fn: Any, co: Any, kt: Any, ts: Any, t: int) -> Any:
        ep = machine(self, fn, co, kt, ts, t)
        assert ep is overload(fn, (co, kt, t) if ts is None else (co, kt, ts, t))
        took.append(ep)
        return ep

    monkeypatch.setattr(stream_entry, "entry_point", entry_point)
    monkeypatch.setattr(stream_entry.EntryPoints, "drive", checked_drive)
    monkeypatch.setattr(stream_entry.EntryPoints, "machine", checked_machine)
    return typed, took


def test_a_later_system_takes_the_entry_points_already_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two of the demo's flip cells on the core - one enclave on two CPUs, two enclaves (two
    slots) on one - then both again in new ``System``s: the second pass types nothing, and
    every call in both takes the overload of its own arguments (a key without the slots'
    layout, or a drive's entry point given to a served machine, fails here)."""
    typed, took = _checked(monkeypatch)
    cells = {(layout, cpus): cfg for layout, ratio, cpus, cfg in flip_configs("8M", 2.0, 0)
             if ratio == 1.0}  # fmt: skip
    runs = [dataclasses.replace(cells[key], fast_core=True)
            for key in (("same enclave", 2), ("idle neighbour", 1))]  # fmt: skip
    first = [demo.run_seed(cfg).summary() for cfg in runs]
    assert len(took) > 4
    typed.clear()
    took.clear()
    again = [demo.run_seed(cfg).summary() for cfg in runs]
    assert again == first
    assert len(took) > 4 and typed == []
