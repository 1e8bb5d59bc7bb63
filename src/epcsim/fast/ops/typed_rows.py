"""A row of a typed list of arrays, borrowed: how compiled code reads the backing store's
rows and the VA versions' blocks without numba's per-item reference counting.

Why (issue 9, PATHS.md "Per fault on the core", session ``fault1``): the backing store's
rows (``EnclaveBacking.compiled()``: ``contents``, ``mac``, ``flags``, ``high``) and the VA
pages' version blocks (``KState.vp_blocks``) are numba typed lists of arrays, one array a
chunk, added in Python and never moved or replaced. ``lst[i]`` in compiled code is numba's
``getitem``: it copies the item out, *increfs* the array (an atomic add through an
out-of-line ``NRT_incref``) and the caller decrefs it when done. A fault on the core does
~9 of them (ELDU's lookup and version, EWB's store and version): with ``perf`` on row 1
(``benchmarks/run.py --only 1``'s scenario) ``getitem`` and the reference counting were
~8% of the core's time.

``row(lst, i)`` loads item ``i`` in place (numba's own ``numba_list_base_ptr``, as its
``getitem`` does) and hands it back with its meminfo NULL - a borrowed view, as
``cosim.borrow`` makes of the machines' tuples: numba's incref and decref of it return at
once. Valid while the list holds the array, i.e. for the whole compiled call (Python adds
rows between calls and never removes one while a ``KState`` holds the list). So a caller
may read and write through it but must not keep it past the call (store it in a list or
return it). An index out of range raises ``IndexError`` as ``getitem`` does.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.errors import TypingError
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.typed.listobject import _container_get_data


@intrinsic  # type: ignore[misc]
def row(typingctx: Any, lst: Any, i: Any) -> Any:
    """Item ``i`` of the typed list ``lst`` of arrays, borrowed (module docstring). An
    intrinsic, not an inlined function: numba's IR inlining of a helper into the
    machines' inlined helpers (``eldu.eldu_check`` into ``thread_run``) broke the
    machine (measured: a wrong lock state after some faults), LLVM's does not."""
    if not isinstance(lst, types.ListType) or not isinstance(lst.item_type, types.Array):
        raise TypingError("row: a typed list of arrays is required")
    if not isinstance(i, types.Integer):
        raise TypingError("row: an integer index is required")
    item_ty = lst.item_type

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        tl, ti = sig.args
        lv, iv = args
        idx = context.cast(builder, iv, ti, types.intp)
        lp = _container_get_data(context, builder, tl, lv)
        size_fnty = ir.FunctionType(cgutils.intp_t, [cgutils.voidptr_t])
        size_fn = cgutils.get_or_insert_function(builder.module, size_fnty, "numba_list_length")
        n = builder.call(size_fn, [lp])
        bad = builder.or_(
            builder.icmp_signed("<", idx, idx.type(0)), builder.icmp_signed(">=", idx, n)
        )
        with builder.if_then(bad, likely=False):
            context.call_conv.return_user_exc(builder, IndexError, ("row index out of range",))
        fnty = ir.FunctionType(cgutils.voidptr_t, [cgutils.voidptr_t])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_list_base_ptr")
        base = builder.call(fn, [lp])
        data_ty = context.get_data_type(item_ty)
        ptr = cgutils.gep(builder, builder.bitcast(base, data_ty.as_pointer()), idx)
        item = context.data_model_manager[item_ty].load_from_data_pointer(builder, ptr)
        a = cgutils.create_struct_proxy(item_ty)(context, builder, value=item)
        a.meminfo = cgutils.get_null_value(a.meminfo.type)
        return impl_ret_borrowed(context, builder, item_ty, a._getvalue())

    return item_ty(lst, i), codegen


__all__ = ["row"]
