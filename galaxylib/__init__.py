"""galaxylib: a reproduction of Ng (2024), CNNs and Vision Transformers on the Kaggle Galaxy Zoo challenge.

    import galaxylib as gz
    run = gz.train("baseline", "data/galaxy-zoo", profile="quick")   # a Table I/II row, trained or reused
    df = gz.predict(run, "data/galaxy-zoo/images_test_rev1")        # GalaxyID + the 37 vote fractions
    run = gz.load_run("runs/baseline-seed1-1a2b3c4d")
    gz.EXPERIMENTS, gz.PROFILES                                      # what can be trained, and at what scale

The API is galaxylib.api, loaded on first use (so that `import galaxylib` and the command line start fast).
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"
__all__ = ["EXPERIMENTS", "PROFILES", "Run", "__version__", "load_run", "predict", "train"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("galaxylib.api"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
