"""Link functions and init predictions, computed by the functions sklearn calls.

Whatever goes through ``exp`` or ``log`` is computed as sklearn computes it, in
the same dtype and order: numpy's ``np.exp``/``np.log`` for the multinomial link
(softmax, geometric mean); scipy's ``expit``/``logit`` for the binary links,
which call the C library's ``exp``/``log``/``log1p``, as :mod:`math` does
(scipy is not imported).
"""

from __future__ import annotations

import math

import numpy as np

EPS = float(np.finfo(np.float64).eps)
#: ``math.exp`` of anything above this may overflow (``log(DBL_MAX)`` is 709.78...): such values take the slow path.
_EXP_SAFE = 709.0


def _exp_or_inf(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def expit(x: np.ndarray) -> np.ndarray:
    """scipy.special.expit of float64 ``x``, bit for bit, without importing scipy.

    scipy computes ``1 / (1 + exp(-x))`` with the C library's ``exp`` (xsf's
    ``log_exp.h``), which is also what :func:`math.exp` calls; numpy's own
    ``np.exp`` is vectorised differently per SIMD level and would not match.
    The sum and the division are correctly rounded in numpy as in C.
    """
    neg = np.negative(x)
    overflows = neg > _EXP_SAFE  # math.exp raises where C's exp returns inf
    e = np.fromiter(map(math.exp, np.where(overflows, 0.0, neg).ravel().tolist()), dtype=np.float64, count=neg.size)
    e = e.reshape(neg.shape)
    if overflows.any():
        e[overflows] = [_exp_or_inf(v) for v in neg[overflows].tolist()]
    np.add(1.0, e, out=e)
    return np.divide(1.0, e, out=e)


def logit(p: float) -> float:
    """scipy.special.logit of a double (xsf's ``log_exp.h``), with the C library's log and log1p as scipy."""
    if p < 0.3 or p > 0.65:
        return math.log(p / (1 - p))
    s = 2 * (p - 0.5)
    return math.log1p(s) - math.log1p(-s)


def binary_init(prior: np.ndarray, *, half: bool) -> float:
    """Raw init prediction of a binary gradient boosting from its ``DummyClassifier`` prior.

    sklearn: ``predict_proba(X)[:, 1]`` clipped to ``[eps, 1 - eps]``, then the
    loss link: ``logit`` (log_loss) or ``0.5 * logit`` (exponential, ``HalfLogitLink``).
    """
    p = float(np.clip((np.ones((1, 1)) * prior)[:, 1], EPS, 1 - EPS, dtype=np.float64)[0])
    raw = logit(p)
    return 0.5 * raw if half else raw


def multinomial_init(prior: np.ndarray) -> np.ndarray:
    """Raw init prediction (K,) of a multiclass gradient boosting from its ``DummyClassifier`` prior.

    sklearn's ``MultinomialLogit.link`` on the clipped prior: ``log(p / gmean(p))``,
    with scipy's ``gmean(p, axis=1) = exp(mean(log(p), axis=1))``, all numpy ufuncs
    (so the result depends on numpy's SIMD level, exactly as sklearn's does).
    """
    proba = np.clip(np.ones((1, 1)) * prior, EPS, 1 - EPS, dtype=np.float64)
    gmean = np.exp(np.mean(np.log(proba), axis=1))
    return np.log(proba / gmean[:, None]).reshape(-1)


def softmax(raw: np.ndarray) -> np.ndarray:
    """sklearn.utils.extmath.softmax, operation for operation.

    On a C-ordered copy, as sklearn's raw predictions are: numpy sums the rows
    of an F-ordered array in another order.
    """
    X = np.array(raw, dtype=np.float64, order="C", copy=True)
    X -= np.max(X, axis=1).reshape(-1, 1)
    return normalized_exp(X)


def normalized_exp(X: np.ndarray) -> np.ndarray:
    """The rest of :func:`softmax` once each row's maximum is subtracted, in place on the
    C-ordered float64 ``X``: numpy's ``exp``, then each row divided by its sum (``np.add.reduce``,
    what ``np.sum`` calls, without its Python wrapper: a microsecond of one row's latency).

    >>> normalized_exp(np.array([[0.0, 0.0]])).tolist()
    [[0.5, 0.5]]
    """
    np.exp(X, out=X)
    return np.divide(X, np.add.reduce(X, axis=1, keepdims=True), out=X)
