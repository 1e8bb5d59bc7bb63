"""A borrowed reference to a tuple of arrays: how the core calls a state machine cheaply.

Why (issue 9, PATHS.md "Per fault on the core"): a machine (``driver/thread.py``,
``driver/ksgxd.py``) takes the ``CoState``/``KState``/``TState`` tuples, ~60 arrays and
typed lists. Passed by value, numba flattens them into ~500 scalar arguments at every
call, and its reference counting increfs each array at the machine's entry and decrefs it
at each exit (~124 out-of-line ``NRT_incref``/``NRT_decref`` calls): ~0.5 us a call,
6.45 calls per fault. The core's loop (``drive``) calls the machines many times with the
same tuples, which it keeps alive for the whole loop, so the machine needs no reference of
its own:

* ``borrow(tup)`` stores the tuple once in the caller's stack frame and gives a
  ``Borrowed`` value: one pointer, no reference counting (it is valid while the caller's
  frame lives - the caller must not return it or keep it past its own return);
* ``unborrow(p)`` gives the tuple back inside the machine with every meminfo NULL: its
  arrays are views whose reference counting does nothing (numba's ``NRT_incref`` and
  ``NRT_decref`` return at once on NULL), since the caller owns the references. A view
  made from such an array (a slice) is a borrowed view too; nothing may keep one past
  the call (the machines return integers and store no array).

A typed list borrowed this way still reads its items through its data pointer (its
meminfo is not read by ``getitem``/``len``); an item read from it is a real reference.

The core's primitives take the borrowed ``CoState`` too (issue 9, session ``pcost``): by
value, each call of ``perform``, ``run``, ``lock``, ``schedule``, ... pushes the tuple's 9
arrays, ~74 machine words, on the stack (measured in the machines' code), and the machines
and ``drive`` make ~20 such calls a fault. ``member(p, i)`` is the ``i``-th tuple of a
borrowed tuple of tuples, borrowed in place (a pointer into the caller's slot, no copy),
and a borrowed *named* tuple answers ``.field`` as the tuple would, loading only that
field (its meminfo NULL as above). So a primitive written as ``st.clk[...]``,
``st.tasks[...]`` runs unchanged on either: numba compiles one version for a ``CoState``
(callers from Python, tests, the cosim programs) and one for ``Borrowed(CoState)`` (the
machines and ``drive``), whose calls pass one pointer.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.datamodel import models
from numba.core.errors import TypingError
from numba.core.imputils import impl_ret_borrowed, lower_getattr_generic
from numba.core.typing.templates import AttributeTemplate, infer_getattr
from numba.extending import intrinsic, register_model


class Borrowed(types.Type):  # type: ignore[misc]
    """A pointer to a tuple kept alive by the frame that borrowed it (module docstring)."""

    def __init__(self, tup: Any) -> None:
        self.tup = tup
        super().__init__(name=f"Borrowed({tup})")

    @property
    def key(self) -> Any:
        return self.tup


register_model(Borrowed)(models.OpaqueModel)


def _members(ty: Any) -> list[Any]:
    """A tuple type's member types (numba's tuple types are iterable; its stubs say not)."""
    return list(ty)


def _check(ty: Any) -> None:
    """Only arrays, typed lists and tuples of them (and plain scalars) can be borrowed."""
    if isinstance(ty, types.BaseTuple):
        for m in _members(ty):
            _check(m)
    elif not isinstance(ty, (types.Array, types.ListType, types.Number, types.Boolean)):
        raise TypingError(f"borrow: cannot borrow a {ty}")


def _null_meminfos(context: Any, builder: Any, ty: Any, val: Any) -> Any:
    """``val`` with the meminfo of every array and typed list in it set to NULL."""
    if isinstance(ty, types.BaseTuple):
        for i, m in enumerate(_members(ty)):
            v = builder.extract_value(val, i)
            val = builder.insert_value(val, _null_meminfos(context, builder, m, v), i)
        return val
    if isinstance(ty, (types.Array, types.ListType)):
        s = cgutils.create_struct_proxy(ty)(context, builder, value=val)
        s.meminfo = cgutils.get_null_value(s.meminfo.type)
        return s._getvalue()
    return val


@intrinsic  # type: ignore[misc]
def borrow(typingctx: Any, tup: Any) -> Any:
    """``borrow((st, ks, ...))``: the tuple stored once in the caller's frame."""
    if not isinstance(tup, types.BaseTuple):
        raise TypingError("borrow: a tuple is required")
    _check(tup)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        (val,) = args
        slot = cgutils.alloca_once(builder, val.type)
        builder.store(val, slot)
        return builder.bitcast(slot, cgutils.voidptr_t)

    return Borrowed(tup)(tup), codegen


@intrinsic  # type: ignore[misc]
def unborrow(typingctx: Any, p: Any) -> Any:
    """The tuple ``p`` points to, its arrays' reference counting off (module docstring)."""
    if not isinstance(p, Borrowed):
        raise TypingError("unborrow: a Borrowed value is required")

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        (ptr,) = args
        lt = context.get_value_type(p.tup)
        val = builder.load(builder.bitcast(ptr, ir.PointerType(lt)))
        return _null_meminfos(context, builder, p.tup, val)

    return p.tup(p), codegen


@intrinsic  # type: ignore[misc]
def member(typingctx: Any, p: Any, i: Any) -> Any:
    """``member(p, i)``: tuple ``i`` of the tuple ``p`` borrows, borrowed in place."""
    if not isinstance(p, Borrowed) or not isinstance(i, types.IntegerLiteral):
        raise TypingError("member: a Borrowed value and a literal index are required")
    k = i.literal_value
    members = _members(p.tup)
    if not 0 <= k < len(members) or not isinstance(members[k], types.BaseTuple):
        raise TypingError(f"member: {p.tup} has no tuple at {k}")

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = builder.bitcast(args[0], ir.PointerType(context.get_value_type(p.tup)))
        return builder.bitcast(cgutils.gep_inbounds(builder, ptr, 0, k), cgutils.voidptr_t)

    return Borrowed(members[k])(p, i), codegen


@intrinsic  # type: ignore[misc]
def member_at(typingctx: Any, p: Any, i: Any) -> Any:
    """``member_at(p, i)``: tuple ``i`` of the uniform tuple ``p`` borrows, ``i`` an integer
    known only at run time, borrowed in place (``member``'s pointer with a runtime index:
    numba lays a ``UniTuple`` out as an LLVM array, so the GEP is valid). Why: the machines
    take one ``KState`` per enclave slot (``UniTuple(KState, 2)``, PATHS.md "Two enclaves in
    the regime") and pick a victim page's enclave per page. No bounds check: the callers
    index with a slot number they keep (0 or 1). An intrinsic, so its code is the caller's:
    no compiled function per index type or constant."""
    if not isinstance(p, Borrowed) or not isinstance(p.tup, types.UniTuple):
        raise TypingError("member_at: a Borrowed uniform tuple is required")
    if not isinstance(i, types.Integer):
        raise TypingError("member_at: an integer index is required")
    dtype = p.tup.dtype
    if not isinstance(dtype, types.BaseTuple):
        raise TypingError(f"member_at: {p.tup} holds no tuples")

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = builder.bitcast(args[0], ir.PointerType(context.get_value_type(p.tup)))
        at = cgutils.gep_inbounds(builder, ptr, 0, args[1])
        return builder.bitcast(at, cgutils.voidptr_t)

    return Borrowed(dtype)(p, i), codegen


@infer_getattr
class _BorrowedFields(AttributeTemplate):  # type: ignore[misc]
    """``p.field`` of a borrowed named tuple: the field's type (module docstring)."""

    key = Borrowed

    def generic_resolve(self, ty: Any, attr: str) -> Any:  # type: ignore[override]
        tup = ty.tup
        fields = tup.fields if isinstance(tup, types.BaseNamedTuple) else ()  # type: ignore[attr-defined]
        return _members(tup)[fields.index(attr)] if attr in fields else None


@lower_getattr_generic(Borrowed)  # type: ignore[misc]
def _borrowed_field(context: Any, builder: Any, ty: Any, val: Any, attr: str) -> Any:
    """Load only field ``attr`` from the caller's slot, its meminfo NULL."""
    tup = ty.tup
    k = tup.fields.index(attr)
    mty = _members(tup)[k]
    ptr = builder.bitcast(val, ir.PointerType(context.get_value_type(tup)))
    v = builder.load(cgutils.gep_inbounds(builder, ptr, 0, k))
    return impl_ret_borrowed(context, builder, mty, _null_meminfos(context, builder, mty, v))


__all__ = ["Borrowed", "borrow", "member", "member_at", "unborrow"]
