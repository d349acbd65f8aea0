"""The store format's fixed names and limits, each defined once with one meaning (docs/FORMAT.md).

Every module that reads or writes a store imports these from here; nothing
below imports any other treeshard module, so any layer may use it.
"""

from __future__ import annotations

import json
import re
from typing import Any

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)

# --------------------------------------------------------------------------- keys
#: The root group's metadata document (zarr v3), which holds the config record.
ROOT_METADATA = "zarr.json"
#: The config record's attribute in the root metadata.
CONFIG_KEY = "treeshard"
#: The digest record (a store file beside the root metadata).
DIGEST_KEY = "treeshard.sha256"
#: The detached signature of the digest record (not listed in the digest itself).
SIGNATURE_KEY = "treeshard.sig"

# --------------------------------------------------------------------------- what a reader accepts
#: Bytes of the root metadata (config record and consolidated array metadata).
MAX_CONFIG_BYTES = 64 * 1024 * 1024
#: Nesting depth of any JSON document read from a store (a pipeline's record nests about six
#: levels per composite step: 64 holds Pipeline > ColumnTransformer > Pipeline > FeatureUnion nests).
MAX_JSON_DEPTH = 64
#: Nesting depth of any JSON text a reader parses, counted on the raw text before parsing
#: (what a writer makes stays under MAX_JSON_DEPTH plus a few levels), so that the
#: recursive parser never runs near the interpreter's recursion limit.
MAX_PARSE_DEPTH = 96
#: Bytes of the digest record.
MAX_DIGEST_BYTES = 64 * 1024 * 1024
#: Bytes of the signature document.
MAX_SIGNATURE_BYTES = 64 * 1024
#: Files (directory entries or zip members) in one store.
MAX_STORE_ENTRIES = 1_000_000
#: Decoded bytes of one chunk.
MAX_CHUNK_BYTES = 64 * 1024 * 1024
#: Decoded bytes of one array.
MAX_ARRAY_BYTES = 2**40
#: Inner chunks of one shard.
MAX_CHUNKS_PER_SHARD = 1 << 20
# A hostile config must not exhaust memory: bounds of its fields.
MAX_TREES = 10_000_000
MAX_NODES = 2**40
MAX_FEATURES = 2**31 - 1
MAX_OUTPUTS = 100_000
MAX_CLASSES = 2**31 - 1
MAX_VALUE_WIDTH = 2**31 - 1
MAX_VALUE_BYTES = 2**40  # the node values of a model, in bytes

# --------------------------------------------------------------------------- what save() writes
# Inside the reader's MAX_CONFIG_BYTES for the root metadata, which also holds
# the consolidated array metadata.
#: Bytes of the user's ``metadata`` as JSON.
MAX_USER_METADATA_BYTES = MAX_CONFIG_BYTES // 2
#: Bytes of the config record as written.
MAX_SAVED_CONFIG_BYTES = MAX_CONFIG_BYTES - 4 * 1024 * 1024


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> bytes:
    """The one byte string a JSON value hashes as: sorted keys, no spaces, UTF-8."""
    return _CANONICAL.encode(value).encode()


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_QUOTED = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'"[]{}')))


def loads_json(raw: bytes | str) -> Any:
    """``json.loads(raw)``, after checking that ``raw`` nests no deeper than :data:`MAX_PARSE_DEPTH`.

    The check runs without recursion before the (recursive) parser sees the text, so that
    hostile nesting never takes the stack near the recursion limit, where a garbage
    collection's finalizers would fail ("Exception ignored ... RecursionError"). Raises
    ``ValueError`` for text that is too deep or not JSON.

    >>> loads_json(b'{"a": [1, "]]"]}')
    {'a': [1, ']]']}
    >>> loads_json("[" * 100 + "]" * 100)
    Traceback (most recent call last):
    ...
    ValueError: JSON nested deeper than 96 levels
    """
    import numpy as np

    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if b"\\" in data:
        data = _ESCAPE.sub(b"", data)  # an escaped quote or bracket is neither a string's end nor a level
    # Quotes and brackets only, then the strings (now holding brackets only) removed.
    brackets = np.frombuffer(_QUOTED.sub(b"", data.translate(None, _NOT_STRUCTURE)), dtype=np.uint8)
    if brackets.size > MAX_PARSE_DEPTH:
        # The depth after each bracket (an unmatched closer first makes the text invalid: the
        # parser stops there, before any deeper level).
        depth = np.cumsum(np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1))
        if depth.max() > MAX_PARSE_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_PARSE_DEPTH} levels")
    return json.loads(raw)
