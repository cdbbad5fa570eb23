"""The paper's train/validation split, and the seeded subset a profile trains on."""

from __future__ import annotations

import math
import warnings

import numpy as np

from galaxylib import tree
from galaxylib.data.read import GalaxyData
from galaxylib.errors import DataError


class UnstratifiedSplit(UserWarning):
    """A subset too small to stratify on Q1 was split unstratified (expected for small profiles)."""


def profile_subset(data: GalaxyData, max_images: int | None, seed: int = 1) -> GalaxyData:
    """At most `max_images` galaxies, a fixed seeded choice kept in GalaxyID order (all when None).

    Fully labelled galaxies are chosen first (each group in the seeded order): where full and partial labels mix
    (the Kaggle sample: 300 full, 3,863 with 17 columns), the few galaxies that label the deeper questions are
    never left out. On fully labelled data this is the plain seeded choice.
    """
    if not max_images or len(data) <= max_images:
        return data
    order = np.random.default_rng(seed).permutation(len(data))
    if data.labels is not None:
        full = ~np.isnan(data.labels[order]).any(1)
        order = np.concatenate([order[full], order[~full]])
    return data.subset(np.sort(order[:max_images]))


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
        warnings.warn(message + "; splitting unstratified", UnstratifiedSplit, stacklevel=2)
        stratify = None
    train, val = train_test_split(order, test_size=test_size, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)



HOLDOUT_SEED = 13  # independent of every training seed and of the split's random_state


def holdout_split(data: GalaxyData, n: int, seed: int = HOLDOUT_SEED) -> tuple[GalaxyData, GalaxyData]:
    """(the rest, the held-out set): `n` fully labelled galaxies set aside before anything else sees the data.

    The rule, fixed and documented so that the held-out set is the same for every run, seed and profile: among the
    galaxies with all 37 columns labelled, in GalaxyID order, the first `n` of numpy's
    default_rng(13).permutation. They never enter training, validation or model selection; they are scored once,
    by the final model (on the Kaggle sample: 100 of its 300 fully labelled galaxies).

    Args:
        data: labelled galaxies (GalaxyID order).
        n: how many to hold out; 0 holds out none.
        seed: the permutation's seed.

    Returns:
        (rest, held_out), both in GalaxyID order.
    """
    if n <= 0:
        return data, data.subset(np.zeros(0, np.int64))
    if data.labels is None:
        raise DataError("a held-out set needs labels")
    full = np.flatnonzero(~np.isnan(data.labels).any(1))
    if len(full) <= n:
        raise DataError(f"cannot hold out {n} fully labelled galaxies: the data has {len(full)}")
    held = np.sort(full[np.random.default_rng(seed).permutation(len(full))[:n]])
    rest = np.setdiff1d(np.arange(len(data)), held)
    return data.subset(rest), data.subset(held)
