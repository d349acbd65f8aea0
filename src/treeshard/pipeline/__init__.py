"""Pipelines: a composition of transformers and tree ensembles in one store (``docs/FORMAT.md`` section 10).

- :mod:`.table`: the allow-list of classes and functions, by id;
- :mod:`.record`: parsing and checking the record (no sklearn);
- :mod:`.checks`: relations between a transformer's fitted attributes;
- :mod:`.save` / :mod:`.load`: the sklearn side;
- :mod:`.serve`: numpy transforms for the :class:`~treeshard.Predictor`;
- :mod:`.info`: the structure as data.
"""
