"""The flat predictor: scoring straight from the node columns, without sklearn.

:class:`Predictor` reads a store's config and the node columns it needs,
validates them, lays every node out as one 16-byte record (threshold,
feature, child offsets) and predicts with treeshard's compiled traversal
(:mod:`treeshard._kernels`): without the GIL, a block of rows at a time
through each tree in turn, row blocks spread over ``n_jobs`` threads.
Neither scikit-learn nor zarr is imported (treeshard's own directory and zip
stores are read by :mod:`treeshard.chunks`), which is what a serverless
cold start needs.

Every output is bit-identical to the saved estimator's:

- ``X`` is converted to float32 as sklearn does, and a split sends a row left
  when ``x <= threshold`` with ``x`` promoted to float64. The predictor
  compares in float32 against each threshold rounded *down* to float32,
  which is the same test: for a float32 ``x``, ``x <= t`` exactly when ``x``
  is at most the largest float32 not above ``t``.
- NaN goes left exactly when the node's ``missing_go_to_left`` is set, as in
  sklearn's ``Tree.apply``.
- Sparse ``X`` (any scipy.sparse matrix or array) is converted by the same
  scipy calls as sklearn's (``asformat("csr")``, then ``astype(float32)``,
  which sums duplicate entries in float32) and densified a block of rows at a
  time (at most ``SPARSE_BLOCK_BYTES``), holding what sklearn's CSR traversal
  reads: 0.0 where nothing is stored and, for an entry still stored twice (a
  float32 CSR or CSC input), the one stored last. sklearn refuses NaN and
  infinity in sparse ``X`` for every estimator, and so does the predictor;
  scipy is imported only when ``X`` is a scipy object.
- Forest averages are accumulated tree by tree in tree order starting from
  zeros, then divided by the number of trees (a sequential left fold per
  row, whichever thread scores it); gradient boosting adds
  ``learning_rate * value`` stage by stage onto the init estimator's raw
  prediction, which is computed with the same float operations as sklearn's
  ``DummyClassifier``/``DummyRegressor`` + loss link.
- Whatever goes through ``exp`` or ``log`` is computed by the functions
  sklearn calls, in the same dtype and order: numpy's ``np.exp``/``np.log``
  for the multinomial link (softmax, geometric mean) and ``predict_log_proba``;
  scipy's ``expit``/``logit`` for the binary links, which call the C library's
  ``exp``/``log``/``log1p``, as :mod:`math` does (scipy is not imported).
  These outputs equal sklearn's on the running machine; numpy's ``exp`` and
  ``log`` round differently per SIMD level, so they may differ between CPUs.

A serverless handler opens the model once per container, at import time, and
predicts per request (the first request then costs the interpreter, numpy,
treeshard's own small imports and reading the store, never sklearn or zarr)::

    import numpy as np
    import treeshard

    MODEL = treeshard.Predictor("model.zip")  # module level: once per cold start

    def handler(event, context):
        return {"label": MODEL.predict(np.asarray([event["features"]])).tolist()}

Not supported: custom ``init`` estimators of gradient boosting (treeshard
cannot store them either), and NaN in a DataFrame of sparse columns (sklearn
sends it right at every split, whatever ``missing_go_to_left`` says): it is
refused.

The package, one room per concern: :mod:`.core` (the :class:`Predictor`'s
methods), :mod:`.inputs` (input conversion: dense, sparse, feature names),
:mod:`.model` (set-up from the config and the node columns read),
:mod:`.links` (expit, logit, softmax, init predictions),
:mod:`.traversal` (the node table, threads and kernel calls), :mod:`.hist`
(histogram gradient boosting stores: their own node columns, input
preprocessing and compiled walk), :mod:`.isolation` (IsolationForest:
columns mapped to X, path terms, scores) and :mod:`.registry` (the classes
``Predictor(store)`` may become count as :class:`Predictor` in ``isinstance``).
"""

from .core import Predictor
from .traversal import available_cores

__all__ = ["Predictor", "available_cores"]
