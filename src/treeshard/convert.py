"""Conversion from joblib/pickle files: the ONE place treeshard unpickles.

Unpickling runs whatever code the file contains. Only convert files you made
or fully trust; the CLI requires ``--trust-pickle`` to get here. The read
path (``load``/``open``) never imports this module.
"""

from __future__ import annotations

import os
from typing import Any


def load_trusted_pickle(path: str | os.PathLike) -> Any:
    """UNSAFE: unpickle ``path`` (joblib or plain pickle). Trusted files only."""
    import joblib

    return joblib.load(path)


def convert_pickle(model: str | os.PathLike, store: Any, *, codec: str = "lz4", overwrite: bool = False, progress: bool = True) -> None:
    """UNSAFE: unpickle a trusted ``model`` file and save it to ``store``."""
    from tqdm import tqdm

    from .api import save

    with tqdm(total=2, desc="convert", unit="step", disable=not progress) as bar:
        bar.set_postfix_str("unpickling (trusted file)")
        estimator = load_trusted_pickle(model)
        bar.update()
        bar.set_postfix_str(f"saving {type(estimator).__name__}")
        save(estimator, store, codec=codec, overwrite=overwrite)
        bar.update()
