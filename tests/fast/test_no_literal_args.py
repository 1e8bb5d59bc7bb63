"""No compiled function passes a constant int to a compiled function numba does not inline.

Why (tests/README.md, "One compiled signature per machine"): numba types a constant
argument - a literal ``0`` or a module-level ``int`` such as ``RQ_RUN`` - as
``Literal[int](k)`` and compiles the callee once per distinct constant. Before this rule
the core's ``schedule`` had 14 compiled versions, ``perform`` 13, ``hand_back`` 11 (62 of
the suite's 275 cold compiles). Call sites wrap such a constant in ``np.int64(...)`` (typed
``int64``: one signature), as ``fast/cosim/jit.py`` says.

A static check of the sources (``ast``), so it holds whether numba's cache is warm or
cold: compiled callers loaded from the cache never type their callees, and a check of
``dispatcher.signatures`` after a run would pass vacuously there.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
from typing import Any

import numpy as np
from numba import njit
from numba.core.registry import CPUDispatcher

import epcsim.fast
from epcsim.fast.cosim import handback
from epcsim.fast.cosim.handback import hand_back
from epcsim.fast.cosim.state import HB_BUDGET

#: Callers left out, each with its reason:
#: - ``tag_sealing.digest2``: its offsets, counters and final-block flags are constants so
#:   LLVM specialises BLAKE2b's ``compress`` on them: the seal's host CPU is 36% higher
#:   without (session ``suite3``, 2026-11-26, measured; ``fast/ops/tag_sealing.py`` says
#:   how). ``keystream`` and ``tag_mac`` no longer pass literals (no measurable cost).
ALLOWED = {
    "epcsim.fast.ops.tag_sealing.digest2",
}


def _compiled_functions() -> list[Any]:
    """Every numba dispatcher defined in a module of ``epcsim.fast``."""
    out = []
    for info in pkgutil.walk_packages(epcsim.fast.__path__, "epcsim.fast."):
        mod = importlib.import_module(info.name)
        for obj in vars(mod).values():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == mod.__name__:
                out.append(obj)
    return out


def _constant_int(node: ast.expr, glb: dict[str, Any]) -> bool:
    """Would numba type this argument as a ``Literal[int]``?"""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, bool)
    if isinstance(node, ast.Name):
        return type(glb.get(node.id)) in (int, bool)
    return False


def _callee(func: ast.expr, glb: dict[str, Any]) -> Any:
    """The object a call's ``f`` or ``module.f`` names (``epcm_ops.eldu_commit(...)``: a
    module-qualified call passed a literal ``False`` unseen before session ``suite3``)."""
    if isinstance(func, ast.Name):
        return glb.get(func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return getattr(glb.get(func.value.id), func.attr, None)
    return None


def literal_calls(disp: Any) -> list[str]:
    """``module.caller -> callee(arg)`` for each constant int passed to a non-inlined
    compiled callee in ``disp``'s source."""
    fn = disp.py_func
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    glb = fn.__globals__
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = _callee(node.func, glb)
        if not isinstance(callee, CPUDispatcher):
            continue
        if callee.targetoptions.get("inline", "never") == "always":
            continue  # inlined into the caller's IR: no compile of its own
        for arg in node.args:
            if _constant_int(arg, glb):
                bad.append(
                    f"{fn.__module__}.{fn.__qualname__} -> {ast.unparse(node.func)}"
                    f"({ast.unparse(arg)})"
                )
    return bad


@njit(inline="always")
def _inlined(a):  # type: ignore[no-untyped-def]
    return a


def _caller(st, t):  # type: ignore[no-untyped-def]
    hand_back(st, HB_BUDGET, -1)
    hand_back(st, np.int64(HB_BUDGET), t)
    handback.hand_back(st, np.int64(HB_BUDGET), False)
    return _inlined(3)


def test_the_check_finds_a_literal_argument() -> None:
    """The check is not vacuous: it flags a literal and a module-level int, not a
    wrapped one nor a variable, and skips an inlined callee; a module-qualified callee
    too."""
    me = f"{__name__}._caller"
    assert sorted(literal_calls(njit(_caller))) == [
        f"{me} -> hand_back(-1)",
        f"{me} -> hand_back(HB_BUDGET)",
        f"{me} -> handback.hand_back(False)",
    ]


def test_no_compiled_function_passes_a_constant_int() -> None:
    funcs = _compiled_functions()
    names = {f.py_func.__name__ for f in funcs}
    assert {"thread_run", "ksgxd_run", "perform", "schedule", "hand_back"} <= names
    bad = [
        b
        for f in funcs
        for b in literal_calls(f)
        if b not in ALLOWED and b.split(" -> ")[0] not in ALLOWED
    ]
    assert bad == [], "wrap these constants in np.int64(...):\n" + "\n".join(bad)
