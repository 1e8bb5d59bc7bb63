"""An ioctl's progress hook: what the model lets a caller see of a page loop as it runs.

Not the kernel's: the kernel's page loops report nothing until they return. The hook is the
model's, for progress bars and for scenarios that act between pages (send a signal, start a
task), and whether it may act decides whether the fast engine may apply a run of pages at
once (``epcsim.fast.ioctl``). Split from ``ioctl.py`` by session ``tidy`` (no code changed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from epcsim.kernel.encl import SgxEncl

#: progress hook: called after each page an ioctl completes, with (encl, bytes done)
ProgressHook = Callable[[SgxEncl, int], None]


def observe_only(hook: ProgressHook | None = None, *, count_only: bool = False) -> Any:
    """Mark ``hook`` as one that only reports progress (a progress bar) and changes nothing
    (usable as ``@observe_only`` or ``@observe_only(count_only=True)``).

    The fast engine may then apply a run of pages at once and call the hook once per page
    afterwards, the clock set to each page's end as the reference's would be
    (``epcsim.fast.ioctl``). A hook without the mark may act - send a signal, start a task,
    change a page - and the reference would see that before the next page, so with such a
    hook the fast engine runs page by page, as the reference does.

    ``count_only``: the hook reads nothing but its byte count - not the clock, not the model
    (``epcsim run``'s build bar). ADD_PAGES' compiled loop takes only such a hook
    (``_add_core``): it calls it once per page after the core's run, when the clock and the
    model are at the run's end (the core keeps no per-page instants)."""

    def mark(h: ProgressHook) -> ProgressHook:
        h.observe_only = True  # type: ignore[attr-defined]
        h.count_only = count_only  # type: ignore[attr-defined]
        return h

    return mark if hook is None else mark(hook)


def hook_may_act(progress: ProgressHook | None) -> bool:
    """A hook is set and not marked ``observe_only``: no batched runs (see above)."""
    return progress is not None and not getattr(progress, "observe_only", False)


__all__ = ["ProgressHook", "hook_may_act", "observe_only"]
