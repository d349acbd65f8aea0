"""Model repositories: versions, aliases, rollback and history over a directory, ``s3://`` or memory.

>>> import treeshard
>>> repo = treeshard.Repository("models/churn")          # doctest: +SKIP
>>> v = repo.save(model, metadata={"metrics": {"auc": 0.91}})  # doctest: +SKIP
>>> repo.set_alias("production", v)                      # doctest: +SKIP
>>> treeshard.load("models/churn@production")            # doctest: +SKIP
"""

from .core import GcReport, Repository, SaveStats, VersionInfo
from .versions import VersionRef

__all__ = ["Repository", "VersionInfo", "VersionRef", "SaveStats", "GcReport"]
