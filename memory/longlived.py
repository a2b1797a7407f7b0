"""Keeping long-lived objects out of Python's full garbage collections.

A full collection walks every object the collector tracks, holding the GIL,
so while it runs the event loop stands still. A warmed process tracks ~450k
objects (the models and their libraries), and an owner's index adds a few
per memory: loading a 100k-memory owner set off full collections of up to
0.78 s each (``memproxy bench scale``, largest event-loop stall during the
cold search: 780 ms before, 134 ms after settling as below).

:func:`settle` moves everything alive now out of the collector's reach
(``gc.freeze``): called after warm-up and after each page of a whole-owner
read and each filled slice of an owner's index. Those objects hold no
reference cycles, so reference counting still frees them once they are
dropped; the price is that a cycle alive at that moment is never collected.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Exempt every object alive now from future collections (O(1))."""
    gc.freeze()
