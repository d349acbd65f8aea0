"""Conversion from joblib/pickle files: the ONE place treeshard unpickles.

Unpickling runs whatever code the file contains. Only convert files you made
or fully trust; the CLI requires ``--trust-pickle`` to get here. The read
path (``load``/``open``) never imports this module.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from .errors import ConversionError

# What unpickling a file that is not a (compatible) pickle may raise.
_UNPICKLING_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    ImportError,
)


def load_trusted_pickle(path: str | os.PathLike) -> Any:
    """UNSAFE: unpickle ``path`` (joblib or plain pickle). Trusted files only.

    Raises :class:`ConversionError` if the file is not a pickle this
    environment can read, and :class:`FileNotFoundError` if it does not exist.
    """
    import joblib

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    try:
        return joblib.load(path)
    except _UNPICKLING_ERRORS as exc:
        raise ConversionError(f"{str(path)!r} is not a readable joblib/pickle file ({type(exc).__name__}: {exc})") from None


def convert_pickle(model: str | os.PathLike, store: Any, *, codec: str = "lz4", overwrite: bool = False, progress: bool = True) -> None:
    """UNSAFE: unpickle a trusted ``model`` file and save it to ``store``."""
    from tqdm import tqdm

    from .api import save
    from .storage.targets import check_target

    check_target(store, overwrite=overwrite)  # an existing store is refused before the (slow) unpickling
    with tqdm(total=2, desc="convert", unit="step", disable=not progress) as bar:
        bar.set_postfix_str("unpickling (trusted file)")
        estimator = load_trusted_pickle(model)
        bar.update()
        bar.set_postfix_str(f"saving {type(estimator).__name__}")
        save(estimator, store, codec=codec, overwrite=overwrite)
        bar.update()
