"""Lazy models travel as references: pickling for Dask and multiprocessing.

A lazily loaded forest's ``estimators_`` (:class:`treeshard.lazy.StoredEstimators`)
pickles as a *reference*: the store's URL or absolute path, its
``storage_options``, the selected tree ids, the cache settings and the load's
checks (``check_chunks=False``, ``verify=True``, the ``public_key`` it
required, as PEM), never the trees. The process that unpickles it (a Dask
worker, a ``multiprocessing`` child) opens the store itself with the same
checks, validates it as any load does, and reads only the trees it uses. The rest of the forest (sklearn parameters, ``classes_``)
pickles as usual, so a 100-tree forest pickles to a few kilobytes.

What this means for trust: no model bytes cross the wire, only where to find
them. The receiving process reads the store with its own credentials (or the
``storage_options`` in the reference, which are pickled with it: prefer
credentials from the environment or an instance role) and checks every
chunk as a local load does. The pickle itself is still a pickle, to be
accepted only from a trusted sender, as Dask already requires. A model read
from a zarr ``Store`` object (memory, ...), which no other process can open,
pickles its trees by value (a plain list).

A reference is pinned to the model it was pickled from: it carries the ``digest``
of the store's digest record, and a process that finds another model at that
location (replaced since) raises :class:`~treeshard.IntegrityError` instead of
scoring with it (stores without the record, or loaded with
``check_chunks=False``, are not pinned).

In one process, unpickling the same reference again returns the same lazy
estimators (a few references are kept), so the tasks a worker runs share one
open store and one cache of built trees.

>>> import pickle, treeshard                                   # doctest: +SKIP
>>> model = treeshard.load("s3://models/rf.zip", storage_options=opts)  # doctest: +SKIP
>>> len(pickle.dumps(model))   # the sklearn attributes and a reference  # doctest: +SKIP
4012
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

#: How many opened references one process keeps (the most recently unpickled).
MAX_OPEN_REFERENCES = 4
_OPENED: OrderedDict[tuple, Any] = OrderedDict()
_LOCK = threading.Lock()


def store_reference(store: Any, storage_options: Mapping[str, Any] | None) -> tuple[str, dict[str, Any] | None] | None:
    """``(URL or absolute path, storage_options)`` that another process can open; None for a Store object."""
    from .storage.urls import is_url

    reference = getattr(store, "__treeshard_reference__", None)
    if reference is not None:  # a repository version: "REPOSITORY@vN" (treeshard.repository)
        return reference()
    if is_url(store):
        return store, dict(storage_options) if storage_options else None
    if isinstance(store, (str, os.PathLike)):
        return os.path.abspath(os.fspath(store)), None
    return None


def reference_of(lazy: Any) -> tuple[str, dict[str, Any] | None] | None:
    """The store reference of a :class:`~treeshard.lazy.StoredEstimators` (None if it has none)."""
    reader = getattr(lazy.source, "reader", None)
    if getattr(reader, "_prefix", ""):
        return None  # an ensemble inside a pipeline store: a reference would reopen the whole pipeline
    fast = getattr(reader, "_fast", None)
    argument = getattr(fast, "store_argument", None)
    if argument is None:
        return None
    from .storage.urls import is_repository_reference

    store, storage_options = argument
    resolved = getattr(fast, "location", None)
    if isinstance(resolved, str) and resolved != store and is_repository_reference(store):
        # "REPO@alias" (or "@latest") was resolved to "REPO@vN" when it was opened: refer to
        # that version, not to whatever the alias names when the reference is opened.
        store = resolved
    return store_reference(store, storage_options)


def content_digest_of(lazy: Any) -> str | None:
    """The ``digest`` of the record (``treeshard.sha256``) its store was opened with: what pins a
    reference to the model it was pickled from (None: a store without the record, or
    ``check_chunks=False``)."""
    digests = getattr(getattr(getattr(lazy.source, "reader", None), "_fast", None), "digests", None)
    return None if digests is None else digests.record.digest


def load_options_of(lazy: Any) -> dict[str, Any]:
    """The load options (``check_chunks``, ``verify``, ``public_key``) its store was opened with."""
    return dict(getattr(lazy.source.reader, "load_options", {}))


def reduce_lazy_estimators(lazy: Any, *, opener: Callable[..., Any]) -> tuple[Any, tuple]:
    """``__reduce__`` of :class:`~treeshard.lazy.StoredEstimators`: a reference, or the trees by value.

    ``opener`` is the module-level function the unpickling process calls with the
    reference (:func:`treeshard.api.load_reference`: it passes ``load`` to
    :func:`load_lazy_estimators`, so this module needs no import of the API).
    """
    reference = reference_of(lazy)
    if reference is None:
        return list, (lazy.materialize(),)
    store, storage_options = reference
    return opener, (
        store,
        storage_options,
        [int(i) for i in lazy.indices],
        lazy.cache.capacity_bytes,
        int(lazy.batch_bytes),
        list(lazy._appended),
        lazy.engine.budget,
        load_options_of(lazy),
        content_digest_of(lazy),
    )


def _key(
    store: str, storage_options: Any, indices: list[int], capacity: int | None, batch_bytes: int, load_options: dict[str, Any], digest: str | None
) -> tuple:
    options = json.dumps(storage_options, sort_keys=True, default=repr)
    return store, options, tuple(indices), capacity, batch_bytes, tuple(sorted(load_options.items())), digest


def load_lazy_estimators(
    load: Callable[..., Any],
    store: str,
    storage_options: dict[str, Any] | None,
    indices: list[int],
    capacity_bytes: int | None,
    batch_bytes: int,
    appended: list[Any],
    engine_budget: int | None = None,
    load_options: dict[str, Any] | None = None,
    content_digest: str | None = None,
) -> Any:
    """Open the referenced store and return lazy estimators for ``indices`` (what unpickling calls).

    ``load_options`` (``check_chunks``, ``verify``, ``public_key``) are passed to ``load``;
    references pickled before they were carried have none. ``content_digest``: the store must
    still hold the model the reference was pickled from (its digest record's ``digest``), else
    :class:`~treeshard.IntegrityError`; None (older references, unchecked stores): not pinned.
    """
    from .lazy import EngineSlot, TreeCache

    load_options = dict(load_options or {})
    key = _key(store, storage_options, indices, capacity_bytes, batch_bytes, load_options, content_digest)
    with _LOCK:
        lazy = _OPENED.get(key)
        if lazy is not None:
            _OPENED.move_to_end(key)
    if lazy is None:
        lazy = _open_lazy(load, store, storage_options, indices, load_options, content_digest)
        lazy.cache = TreeCache(capacity_bytes)
        lazy.batch_bytes = batch_bytes
        lazy.engine = EngineSlot(engine_budget)
        with _LOCK:
            lazy = _OPENED.setdefault(key, lazy)
            while len(_OPENED) > MAX_OPEN_REFERENCES:
                _OPENED.popitem(last=False)
    if appended:
        # Trees added by a warm-start fit are pickled by value; keep the shared object clean.
        fresh = lazy[:]
        fresh.cache, fresh.engine = lazy.cache, lazy.engine
        fresh.extend(appended)
        return fresh
    return lazy


def _open_lazy(
    load: Callable[..., Any], store: str, storage_options: dict[str, Any] | None, indices: list[int], load_options: dict[str, Any], content_digest: str | None
) -> Any:
    from .errors import FormatError, IntegrityError

    if storage_options:
        load_options = {**load_options, "storage_options": storage_options}
    replaced = "the model stored there was replaced since this reference was pickled: reload it, or refer to an immutable location (model/v3.zip)"
    try:
        model = load(store, estimators=indices, **load_options)
    except IndexError:  # the selection of a store with fewer trees
        raise FormatError(f"{store!r}: the store no longer holds the referenced trees ({replaced})") from None
    lazy = model.estimators_
    if not np.array_equal(lazy.indices, indices):
        raise FormatError(f"{store!r}: the store no longer holds the referenced trees ({replaced})")
    if content_digest is not None and content_digest_of(lazy) != content_digest:
        raise IntegrityError(f"{store!r}: {replaced}")
    return lazy


def clear_opened() -> None:
    """Forget the references opened in this process (their stores close when unused)."""
    with _LOCK:
        _OPENED.clear()
