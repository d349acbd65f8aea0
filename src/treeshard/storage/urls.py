"""URL detection, once: what makes a ``store`` argument an fsspec URL rather than a path or a Store.

Light (no fsspec import): the read and write routers use it on every call.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..errors import InvalidStoreError

_URL_RE = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://")


def is_url(store: Any) -> bool:
    """Whether ``store`` is an fsspec URL (``scheme://...``) rather than a local path or a Store.

    >>> is_url("s3://bucket/model.zip"), is_url("model.zip"), is_url("/tmp/model")
    (True, False, False)
    """
    return isinstance(store, str) and _URL_RE.match(store) is not None


def is_repository_reference(store: Any) -> bool:
    """Whether ``store`` names a version of a model repository (``"repo@production"``,
    ``"s3://bucket/repo@v3"``) rather than a path that holds an ``@`` (an existing one wins).

    >>> is_repository_reference("models/churn@production"), is_repository_reference("model.zip")
    (True, False)
    """
    return isinstance(store, str) and "@" in store.rsplit("/", 1)[-1] and not os.path.exists(store)


def url_scheme(url: str) -> str:
    match = _URL_RE.match(url)
    if match is None:
        raise ValueError(f"not a URL: {url[:200]!r}")
    return match["scheme"].lower()


def check_storage_options(store: Any, storage_options: Any) -> None:
    """Refuse ``storage_options`` given for a store that is not a URL (they would be ignored).

    >>> check_storage_options("model.zip", {"anon": True})
    Traceback (most recent call last):
    ...
    treeshard.errors.InvalidStoreError: storage_options apply to URLs only (s3://, https://, ...), not to 'model.zip'
    """
    if storage_options and not is_url(store):
        what = repr(store) if isinstance(store, str) else f"a {type(store).__name__}"
        raise InvalidStoreError(f"storage_options apply to URLs only (s3://, https://, ...), not to {what}")
