"""Where a model's bytes live and how they are reached and written.

- :mod:`~treeshard.storage.router`: ``open_source``, from any store argument
  (path, ``.zip``, URL, zarr ``Store``) to a byte source;
- :mod:`~treeshard.storage.sources`: the ``ByteSource`` protocol and the
  directory, zip and zarr Store sources; :mod:`~treeshard.storage.remote`: the
  URL sources (remote directory, remote zip over ranges, cached);
- :mod:`~treeshard.storage.targets`: the one writer (staging, then the target,
  root ``zarr.json`` last) for paths, URLs and Stores;
- :mod:`~treeshard.storage.digest`, :mod:`~treeshard.storage.ziprules`,
  :mod:`~treeshard.storage.local`, :mod:`~treeshard.storage.urls`: the digest
  record, zip rules, local path checks and URL detection, each once.
"""
