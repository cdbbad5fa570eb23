"""The paper's train/validation split, and the seeded subset a profile trains on."""

from __future__ import annotations

import math
import warnings

import numpy as np

from galaxylib import tree
from galaxylib.data.read import GalaxyData
from galaxylib.errors import DataError


def profile_subset(data: GalaxyData, max_images: int | None, seed: int) -> GalaxyData:
    """At most `max_images` galaxies, a fixed seeded choice kept in GalaxyID order (all when None)."""
    if not max_images or len(data) <= max_images:
        return data
    keep = np.sort(np.random.default_rng(seed).permutation(len(data))[:max_images])
    return data.subset(keep)


def paper_split(data: GalaxyData, test_size: float = 0.1, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The paper's train/validation split -> (train, val) integer indices into `data`, each sorted ascending.

    As in the paper's code: scikit-learn `train_test_split` over the GalaxyIDs in ascending order, test_size
    0.1, random_state 1, stratified on argmax(Class1.1..1.3) -> 55,420 / 6,158 on the full data. sklearn's
    shuffled order is not kept: sorted indices read the image cache in order, and training shuffles anyway.
    Tiny data where a Q1 class has fewer than 2 members cannot be stratified: it is split unstratified, with
    a warning. test_size=0 returns every galaxy for training (the paper's code allows this too).
    """
    from sklearn.model_selection import train_test_split  # imported here: sklearn is slow to import

    order = np.argsort(data.ids, kind="stable")  # == arange(N) for loader output
    if test_size == 0:
        return np.sort(order), np.zeros(0, np.int64)
    if data.labels is None:
        raise DataError("paper_split needs labels: it stratifies on the Q1 answer (Class1.1..1.3)")
    q1 = data.labels[order][:, tree.QUESTIONS[0].slice]
    missing = np.isnan(q1).any(1)
    if missing.any():
        example = ", ".join(map(str, data.ids[order][missing][:5]))
        raise DataError(f"paper_split stratifies on Q1, but {missing.sum()} galaxies have no Q1 labels "
                        f"(e.g. GalaxyID {example}); split only fully Q1-labelled data")  # fmt: skip
    strata = q1.argmax(1)
    classes, counts = np.unique(strata, return_counts=True)
    n_val = math.ceil(test_size * len(order)) if isinstance(test_size, float) else int(test_size)
    stratify = strata
    if counts.min() < 2 or n_val < len(classes) or len(order) - n_val < len(classes):
        sizes = dict(zip(classes.tolist(), counts.tolist(), strict=True))
        message = f"paper_split: Q1 class sizes {sizes} are too small to stratify {n_val} validation galaxies"
        warnings.warn(message + "; splitting unstratified", stacklevel=2)
        stratify = None
    train, val = train_test_split(order, test_size=test_size, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)

