"""Large per-batch arrays carved from one block the consuming thread allocated.

An eager load reads and checks batches of trees in background threads while
the caller builds sklearn trees. glibc gives each thread its own malloc arena,
so arrays allocated in a background thread and freed by the caller go back to
that thread's arena, never to the caller's: their pages are not reused by
sklearn's ``Tree.__setstate__`` copies (made in the caller's thread), and each
arena keeps batches' worth of pages faulted in. Measured on RF-L in a fresh
process: about 17,000 more page faults and 60-90 ms more CPU than a load in
one thread. A :class:`Block` allocated by the caller, lent to the worker with
:func:`lending`, makes the batch's large arrays views of the caller's memory,
and the caller hands the same blocks out again (:class:`Blocks`) once a batch's
arrays are gone: a load touches a few blocks' pages, not a new batch's each time.

Only the read path's per-batch arrays go through :func:`empty` and
:func:`zeros`; without a lent block (or once it is used up) they are plain
numpy arrays, so nothing depends on a block being there.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

_ALIGN = 64
_LOCAL = threading.local()


class Block:
    """``nbytes`` of memory handed out as aligned arrays, first come first served."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self._memory = np.empty(self.nbytes + _ALIGN, dtype=np.uint8)
        self._offset = -self._memory.ctypes.data % _ALIGN
        self._lock = threading.Lock()  # chunk decoding may allocate from several threads
        self.lent = False  # set while a worker may still take from it (see Blocks and lending)

    def reuse(self) -> bool:
        """Start handing out the block's memory again, if it is not lent and no array taken
        from it is alive (each holds a reference to it); False, and nothing changes, otherwise."""
        with self._lock:
            if self.lent or sys.getrefcount(self._memory) > 2:  # the attribute and getrefcount's argument
                return False
            self._offset = -self._memory.ctypes.data % _ALIGN
            return True

    def take(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray | None:
        """A C-contiguous uninitialised array from the block, or None if it does not fit."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        with self._lock:  # the view is made under the lock: reuse() sees it
            start = self._offset
            if start + nbytes > self._memory.size:
                return None
            self._offset = start + nbytes + (-nbytes % _ALIGN)
            return self._memory[start : start + nbytes].view(dtype).reshape(shape)


class Blocks:
    """Blocks of ``nbytes`` handed out again once no array taken from them is alive (at most
    ``keep`` kept; :meth:`clear` lets each be freed with its last array)."""

    def __init__(self, nbytes: int, *, keep: int) -> None:
        self.nbytes = nbytes
        self.keep = keep
        self._blocks: list[Block] = []

    def get(self) -> Block:
        """An idle block, or a new one, marked lent until :func:`lending` for it ends."""
        for block in self._blocks:
            if block.reuse():
                break
        else:
            block = Block(self.nbytes)
            self._blocks.append(block)
            if len(self._blocks) > self.keep:
                self._blocks.pop(0)  # the oldest: dropped from the pool, freed with its last array
        block.lent = True
        return block

    def clear(self) -> None:
        self._blocks.clear()


@contextmanager
def lending(block: Block | None) -> Iterator[None]:
    """Within the block, :func:`empty` and :func:`zeros` in this thread take from ``block``;
    at its end the block is no longer lent (what was taken keeps it busy while alive)."""
    previous = getattr(_LOCAL, "block", None)
    _LOCAL.block = block
    try:
        yield
    finally:
        _LOCAL.block = previous
        if block is not None:
            block.lent = False


def empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``np.empty(shape, dtype)``, from the block lent to this thread if it has room."""
    block = getattr(_LOCAL, "block", None)
    out = block.take(shape, dtype) if block is not None else None
    return np.empty(shape, dtype=dtype) if out is None else out


def zeros(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``np.zeros(shape, dtype)``, from the block lent to this thread if it has room."""
    block = getattr(_LOCAL, "block", None)
    out = block.take(shape, dtype) if block is not None else None
    if out is None:
        return np.zeros(shape, dtype=dtype)
    out.fill(0)
    return out
