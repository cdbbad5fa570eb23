"""Kaggle-layout Galaxy Zoo data: read and validate (read), split (split), decode once (cache), and hold it where
training reads it (store). `check` is the check-data summary.

The submodules that need torch (store) are not imported here, so reading and checking data stays fast.
"""

from galaxylib.data.cache import build_cache, default_cache_dir, load_image
from galaxylib.data.fingerprint import data_fingerprint, describe_change
from galaxylib.data.problems import Problem
from galaxylib.data.read import GalaxyData, data_source, load_folders, load_images, read_labels
from galaxylib.data.split import HOLDOUT_SEED, holdout_split, paper_split, profile_subset

__all__ = [
    "HOLDOUT_SEED",
    "GalaxyData",
    "Problem",
    "build_cache",
    "data_fingerprint",
    "data_source",
    "describe_change",
    "default_cache_dir",
    "holdout_split",
    "load_folders",
    "load_image",
    "load_images",
    "paper_split",
    "profile_subset",
    "read_labels",
]
