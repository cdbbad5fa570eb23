"""What every numbered notebook does first: check its parameters, find its data and its output folders.

    from galaxylib import notebook
    data, out = notebook.start(profile, data_dirs, results_dir, device)

The same call serves JupyterLab, papermill run by hand (`papermill notebooks/01_baseline.ipynb out.ipynb -p
profile smoke -p data_dirs DIR`) and `python -m galaxylib reproduce`: `data_dirs` may be one folder (a string, as
`-p` gives it) or a list (`-y "data_dirs: [A, B]"`); `results_dir` None means results/ of the clone galaxylib runs
from, or ./results of the current folder for an installed package.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

# tqdm.auto, imported by the modules below, warns once in a kernel without ipywidgets; its bars are off in
# notebooks anyway (they show only in terminals), so the warning would be the first output of every notebook
warnings.filterwarnings("ignore", message="IProgress not found")

from galaxylib import cli  # noqa: E402
from galaxylib.errors import UserError  # noqa: E402
from galaxylib.experiments import get_profile  # noqa: E402
from galaxylib.reproduce import Outputs, ensure_data, outputs  # noqa: E402


def quiet_known_warnings() -> None:
    """Warnings a reader of a rendered notebook cannot act on: the unstratified split of the small profiles'
    subsets (documented in the README). (Progress bars are off in notebooks: galaxylib's tqdm bars show in
    terminals only.)"""
    from galaxylib.data.split import UnstratifiedSplit

    warnings.filterwarnings("ignore", category=UnstratifiedSplit)


def start(profile: str = "quick", data_dirs: str | Path | list | None = None, results_dir: str | Path | None = None,
          device: str = "auto") -> tuple[list[Path], Outputs]:
    """The data folders and the output folders of a notebook run, after checking the parameters.

    Args:
        profile: smoke | quick | paper.
        data_dirs: Kaggle-layout folder(s); None: the profile's synthetic Galaxy Zoo (made once into the cache).
        results_dir: where <profile>/{runs,tables,figures} go; None: the clone's results/, else ./results.
        device: auto | cpu | cuda | cuda:N.

    Returns:
        (data folders, output folders).
    """
    get_profile(profile)
    try:
        cli.device(str(device))  # the command line's check (torch-free): the same names as --device accepts
    except argparse.ArgumentTypeError as err:
        raise UserError(f"device {err}") from None
    quiet_known_warnings()
    import pandas as pd

    pd.set_option("display.precision", 5)  # tables read as numbers, not as 16-digit floats
    pd.set_option("display.max_columns", 30)
    return ensure_data(profile, data_dirs), outputs(results_dir, profile)
