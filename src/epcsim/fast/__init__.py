"""The fast engine (``System(engine="fast")``): the reference model with execution shortcuts
that give the same counters and the same event order. See ``README.md`` in this package for
what is covered, where a new kernel feature goes first, and the differential tests."""

from __future__ import annotations

__all__: list[str] = []
