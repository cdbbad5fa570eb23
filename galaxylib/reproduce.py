"""`python -m galaxylib reproduce`: run the numbered notebooks headless (papermill) and collect their results.

    results/<profile>/notebooks/   the rendered notebooks (a failing one is kept, with its traceback)
    results/<profile>/tables/      CSV (full precision) + Markdown (captioned: data, profile, device)
    results/<profile>/figures/     PNG
    results/<profile>/runs/<experiment>-seed<k>-<hash>/   training runs, one per seed (git-ignored), reused or
                                                        resumed by train()

The notebooks call back into this module for the parts every one of them needs: which data to use
(`ensure_data`: the given folders, or a synthetic Galaxy Zoo generated once into the cache) and which run
folder holds an experiment (`run_experiment`: trains it, resumes it or reuses it). Pretrained weights cannot
be downloaded here: when they are not on disk, a foundation model trains from random initialisation and every
table says "no (weights not found)".
"""

from __future__ import annotations

import atexit
import functools
import importlib.resources
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from galaxylib import layout
from galaxylib.errors import NotebookFailed, UserError
from galaxylib.experiments import EXPERIMENTS, FOUNDATION, RunConfig, get_profile, resolve
from galaxylib.fileio import as_paths
from galaxylib.rundir import RunDir, load_run

NOTEBOOKS: tuple[str, ...] = (
    "00_data_exploration", "01_baseline", "02_cbam_ablation", "03_foundation_models", "04_paper_tables",
    "05_results",
)  # fmt: skip
BASELINE_NOTEBOOKS = ("00_data_exploration", "01_baseline", "02_cbam_ablation")  # train no pretrained model
SYNTHETIC_SIZE = {"quick": 1200, "smoke": 120}  # galaxies generated when no data folder is given
SYNTHETIC_SEED = 0
KERNEL_NAME = "python3"  # the notebooks' kernelspec: any environment where galaxylib is installed runs them


def source_checkout() -> Path | None:
    """The root of the git clone galaxylib runs from, or None when it is an installed package."""
    root = Path(__file__).resolve().parents[1]
    is_clone = (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() and (root / "galaxylib").is_dir()
    return root if is_clone else None


def notebook_folder() -> Path:
    """The numbered notebooks: notebooks/ of the clone, or the copy installed as package data."""
    return Path(str(importlib.resources.files("galaxylib.notebooks")))


def default_results_dir() -> Path:
    """results/ of the clone galaxylib runs from; ./results of the current folder for an installed package."""
    root = source_checkout()
    return root / "results" if root is not None else Path.cwd() / "results"


# ----------------------------------------------------------------------------------------------------------
# where things go


@dataclass(frozen=True)
class Outputs:
    root: Path
    runs: Path
    tables: Path
    figures: Path
    notebooks: Path


def outputs(results_dir: str | Path | None, profile: str) -> Outputs:
    """<results_dir>/<profile>/{runs,tables,figures,notebooks}, created (results_dir None: default_results_dir)."""
    root = Path(results_dir if results_dir is not None else default_results_dir()).expanduser().resolve() / profile
    out = Outputs(root, root / "runs", root / "tables", root / "figures", root / "notebooks")
    for folder in (out.runs, out.tables, out.figures, out.notebooks):
        folder.mkdir(parents=True, exist_ok=True)
    return out


# ----------------------------------------------------------------------------------------------------------
# data


def synthetic_dir(profile: str) -> Path:
    from galaxylib.data import default_cache_dir

    n = SYNTHETIC_SIZE[profile]
    return default_cache_dir() / "synthetic" / f"n{n}-seed{SYNTHETIC_SEED}"


def ensure_data(profile: str, data_dirs: str | Path | Sequence[str | Path] | None = None,
                progress: bool = True) -> list[Path]:
    """The data folders to use: the given ones (one folder or several; checked to exist), or the profile's
    synthetic Galaxy Zoo, generated on first use into the cache and reused afterwards. The paper profile needs
    the real data."""
    get_profile(profile)
    if data_dirs:
        dirs = [d.expanduser().resolve() for d in as_paths(data_dirs)]
        for d in dirs:
            if not d.is_dir():
                raise UserError(f"{d}: no such data folder")
        return dirs
    if profile not in SYNTHETIC_SIZE:
        raise UserError(f"the '{profile}' profile needs the Kaggle Galaxy Zoo data: pass --data-dir DIR "
                        f"(make reproduce PROFILE={profile} DATA_DIR=DIR); the README says how to get it")
    from galaxylib import synth

    out = synthetic_dir(profile)
    if progress:
        print(f"data: no --data-dir given, using the synthetic Galaxy Zoo in {out} "
              f"({SYNTHETIC_SIZE[profile]} galaxies; generated on first use)", flush=True)
    synth.generate(out, SYNTHETIC_SIZE[profile], SYNTHETIC_SEED, progress=progress, say_reused=False)
    return [out]


def find_test_image_dirs(data_dirs: Sequence[str | Path]) -> list[Path]:
    """Kaggle test-image folders (images_test_rev1/) inside the data folders."""
    return [Path(d) / layout.TEST_IMAGES_DIR for d in data_dirs if (Path(d) / layout.TEST_IMAGES_DIR).is_dir()]


# ----------------------------------------------------------------------------------------------------------
# runs


@dataclass
class Run:
    """A finished training run of one experiment, as the notebooks use it."""

    experiment: str
    cfg: RunConfig
    run_dir: Path
    metrics: dict
    pretrained: str  # the table's pretrained column
    reused: bool = False  # a finished run found on disk, not trained by this call

    @property
    def label(self) -> str:
        return EXPERIMENTS[self.experiment].label

    @property
    def seed(self) -> int:
        return self.cfg.seed

    def history(self) -> pd.DataFrame:
        return RunDir(self.run_dir).history()

    def load_model(self, which: str = "best"):
        return load_run(self.run_dir, which)[1]


def weights_available(cfg: RunConfig) -> bool:
    """True when the pretrained weights `cfg` asks for are on this machine (nothing is downloaded)."""
    if not cfg.pretrained:
        return True
    if cfg.weights_file:
        return Path(cfg.weights_file).expanduser().is_file()
    from galaxylib.models import find_paper_weights, get_model_spec

    spec = get_model_spec(cfg.model)
    return not spec.has_pretrained_weights or find_paper_weights(spec) is not None


def random_init_allowed(profile: str, allow_random_init: bool | None = None) -> bool:
    """Whether missing pretrained weights may be replaced by random initialisation: the profile says so (quick,
    smoke: yes; paper: no) unless `allow_random_init` says otherwise."""
    if allow_random_init is not None:
        return bool(allow_random_init)
    return get_profile(profile).random_init_when_weights_missing


def check_pretrained_weights(experiments: Sequence[str], profile: str) -> None:
    """Stop before any training when the profile needs pretrained weights that are not on this machine.

    Raises:
        PretrainedWeightsMissing: naming every missing file and where to put it, one line each.
    """
    from galaxylib.errors import PretrainedWeightsMissing
    from galaxylib.models import get_model_spec
    from galaxylib.models.backbones import missing_weights_message

    missing = [missing_weights_message(get_model_spec(EXPERIMENTS[e].model)) for e in experiments
               if not weights_available(resolve(e, profile))]  # fmt: skip
    if missing:
        raise PretrainedWeightsMissing(
            f"the {profile} profile fine-tunes pretrained models, and {len(missing)} of their weight files are "
            "missing (nothing was trained; --allow-random-init / allow_random_init=True trains them from random "
            "weights instead, labelled so):\n  " + "\n  ".join(missing))


def plan_run(experiment: str, profile: str, data_dirs: Sequence[str | Path], results_dir: str | Path,
             device: str = "auto", allow_random_init: bool | None = None,
             seed: int | None = None) -> tuple[RunConfig, Path, str]:
    """(config, run folder, pretrained label) of an experiment under a profile, without training.

    A pretrained experiment whose weights are not on disk stops with PretrainedWeightsMissing, unless random
    initialisation is allowed (`random_init_allowed`): then its config says pretrained=False (so it gets its own
    run folder) and its label says so. `seed` is the training seed (default the paper's, 1); the split never
    depends on it.
    """
    from galaxylib.report import pretrained_label

    cfg = resolve(experiment, profile, device=device, data_dirs=[str(Path(d).resolve()) for d in data_dirs],
                  seed=seed)
    if cfg.pretrained and not weights_available(cfg):
        if not random_init_allowed(profile, allow_random_init):
            check_pretrained_weights([experiment], profile)
        cfg = cfg.replace(pretrained=False)
    label = pretrained_label(experiment, {"pretrained": cfg.pretrained})
    return cfg, outputs(results_dir, profile).runs / cfg.run_name(), label


def run_experiment(experiment: str, *, profile: str, data_dirs: Sequence[str | Path], results_dir: str | Path,
                   device: str = "auto", retrain: bool = False, progress: bool = True,
                   allow_random_init: bool | None = None, seed: int | None = None,
                   say_reused: bool = True) -> Run:
    """Train an experiment with one training seed (default 1, the paper's) into
    results/<profile>/runs/<experiment>-seed<k>-<hash>/, or resume or reuse that run.

    Missing pretrained weights stop it (PretrainedWeightsMissing) unless random initialisation is allowed by the
    profile (quick, smoke) or by `allow_random_init`. say_reused=False leaves the line about a reused run to the
    caller (`run_seeds` says it once for all seeds).
    """
    from galaxylib.report.provenance import WEIGHTS_NOT_FOUND
    from galaxylib.training import fingerprint_data, train

    cfg, run_dir, label = plan_run(experiment, profile, data_dirs, results_dir, device, allow_random_init, seed)
    finished = None if retrain else RunDir(run_dir).finished_metrics(cfg, fingerprint_data(cfg))
    if finished is not None:
        if progress and say_reused:  # one line: the notebooks that reuse every run stay short
            print(f"{run_dir.name}: finished run reused (retrain=True trains it again)", flush=True)
        return Run(experiment, cfg, run_dir, finished, label, reused=True)
    if progress:
        note = "" if label != WEIGHTS_NOT_FOUND else " (pretrained weights not found: random init)"
        print(f"== {experiment}: {EXPERIMENTS[experiment].label}, {profile} profile, seed {cfg.seed}, {cfg.epochs} "
              f"epochs at {cfg.img_size} px{note} -> {run_dir}", flush=True)
    metrics = train(cfg, run_dir, progress=progress, retrain=retrain)
    return Run(experiment, cfg, run_dir, metrics, label)


def seeds_for(experiment: str, profile: str, seeds: int | None = None) -> tuple[int, ...]:
    """The training seeds of an experiment: the profile's (Profile.seeds_of), or 1..`seeds` when given."""
    if seeds is not None:
        if int(seeds) < 1:
            raise UserError(f"seeds must be at least 1, got {seeds}")
        return tuple(range(1, int(seeds) + 1))
    return get_profile(profile).seeds_of(experiment)


def run_seeds(experiment: str, *, profile: str, data_dirs: Sequence[str | Path], results_dir: str | Path,
              device: str = "auto", retrain: bool = False, progress: bool = True,
              seeds: int | None = None, allow_random_init: bool | None = None) -> list[Run]:  # fmt: skip
    """Every training seed of an experiment (`seeds_for`), each trained, resumed or reused by `run_experiment`.

    All seeds train and are scored on the same galaxies (the split does not depend on the seed); they differ in
    initialisation, batch order and augmentation.
    """
    runs = [run_experiment(experiment, profile=profile, data_dirs=data_dirs, results_dir=results_dir,
                           device=device, retrain=retrain, progress=progress, seed=seed,
                           allow_random_init=allow_random_init, say_reused=False)
            for seed in seeds_for(experiment, profile, seeds)]  # fmt: skip
    reused = [r for r in runs if r.reused]
    if progress and reused:  # one line per row, not per seed: notebooks 04 and 05 reuse every run
        many = len(reused) > 1
        print(f"{experiment}: finished run{'s' * many} reused, seed{'s' * many} "
              f"{', '.join(str(r.seed) for r in reused)} (retrain=True trains {'them' if many else 'it'} again)",
              flush=True)  # fmt: skip
    return runs


def make_submission(run: Run, data_dirs: Sequence[str | Path], out_path: str | Path, device: str = "auto",
                    progress: bool = True) -> Path | None:
    """A Kaggle submission from the run's best checkpoint for every image in images_test_rev1/ (if any)."""
    from galaxylib import prediction

    folders = find_test_image_dirs(data_dirs)
    if not folders:
        return None
    ids, paths = prediction.images_in(folders, progress=progress)
    preds = prediction.predict_files(run.load_model("best"), run.cfg, paths, tta=run.cfg.tta, device=device,
                                  progress=progress)
    prediction.write_submission(ids, preds, out_path)
    prediction.check_submission(out_path, expected_ids=ids)
    return Path(out_path)


# ----------------------------------------------------------------------------------------------------------
# running the notebooks


def _kernel_manager_class():
    """A Jupyter kernel manager that starts this very interpreter, whatever kernelspecs the machine has: reproduce
    runs the notebooks with the galaxylib it was started from, and registers nothing anywhere."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class ThisInterpreter(AsyncKernelManager):
        def __init__(self, **kwargs):
            # local sockets (ipc) in a private folder, not TCP ports: nothing else on the machine can talk to the
            # kernel, and ipykernel does not warn about unencrypted TCP
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(_socket_folder() / "kernel"))
            super().__init__(**kwargs)

        @property
        def kernel_spec(self) -> KernelSpec:
            # --log-level=ERROR: the kernel's own log lines (it logs to the terminal, not the notebook) stay out of
            # the pipeline's output
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                                    "--log-level=ERROR"],
                              display_name="Python 3 (galaxylib)", language="python", resource_dir="")

    return ThisInterpreter


@functools.cache
def _socket_folder() -> Path:
    """A private folder for the kernels' ipc sockets, removed when this process ends."""
    folder = Path(tempfile.mkdtemp(prefix="galaxylib-kernels-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def scrub_paths(path: Path, replacements: dict[str, str]) -> None:
    """Replace machine-specific folders (the clone, the cache, the home folder) in a rendered notebook by short
    names, so committed notebooks carry no paths of the machine that rendered them."""
    text = path.read_text()
    for old, new in sorted(replacements.items(), key=lambda kv: -len(kv[0])):  # longest (most specific) first
        if old and old not in ("/", "."):
            text = text.replace(old, new)
    path.write_text(text)


def short_path(path: str | Path, replacements: dict[str, str]) -> str:
    """`path` with the first (longest) matching machine folder replaced by its short name."""
    text = str(path)
    for old, new in sorted(replacements.items(), key=lambda kv: -len(kv[0])):
        if text == old or text.startswith(old.rstrip("/") + "/"):
            return new + text[len(old):]
    return text


def machine_paths(results_dir: Path) -> dict[str, str]:
    """Folders of this machine that rendered notebooks may mention, and what they are shown as."""
    from galaxylib.data.cache import default_cache_dir

    found = {str(Path(results_dir).resolve()): "<results>", str(default_cache_dir().resolve()): "<cache>",
             str(Path.home()): "~"}  # fmt: skip
    root = source_checkout()
    if root is not None:
        found[str(root)] = "<repo>"
    return found


class _Echo:
    """A file-like sink for a notebook's stdout or stderr (papermill's stdout_file / stderr_file): each line
    is shown with the notebook's name in front, so a headless run says which notebook, experiment and epoch
    it is at. Progress bars (lines redrawn with carriage returns) update one line in place on a terminal and
    are left out of logs, apart from their final state."""

    def __init__(self, stream):
        self.stream = stream
        self.notebook = ""
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._buffer = ""
        self._bar_open = False

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            final = line.split("\r")[-1].rstrip()  # what a terminal shows once the line is done
            if final:
                self._clear_bar()
                self.stream.write(f"[{self.notebook}] {final}\n")
        if self.tty and "\r" in self._buffer:
            status = [s for s in self._buffer.split("\r") if s.strip()]
            if status:
                self.stream.write(f"\r[{self.notebook}] {status[-1][:110]}\033[K")
                self._bar_open = True
        self.stream.flush()
        return len(text)

    def _clear_bar(self) -> None:
        if self._bar_open:
            self.stream.write("\r\033[K")
            self._bar_open = False

    def flush(self) -> None:
        self.stream.flush()


def _first_line(text: str) -> str:
    lines = [s.strip() for s in str(text).strip().splitlines() if s.strip()]
    return lines[0][:300] if lines else ""


def run_notebook(name: str, *, parameters: dict, out: Outputs, notebooks_dir: Path, echo: _Echo,
                 scrub: dict[str, str] | None = None) -> float:
    """Execute one notebook into results/<profile>/notebooks/; returns seconds, raises NotebookFailed."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    src, dst = notebooks_dir / f"{name}.ipynb", out.notebooks / f"{name}.ipynb"
    if not src.is_file():
        raise UserError(f"{src}: no such notebook")
    echo.notebook = name
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name=KERNEL_NAME,
                            kernel_manager_class=_kernel_manager_class(), progress_bar=False, stdout_file=echo,
                            stderr_file=echo, cwd=str(notebooks_dir))
    except PapermillExecutionError as err:
        raise NotebookFailed(f"notebook {name}.ipynb failed in cell In [{err.exec_count}] (cell "
                             f"{err.cell_index} of the rendered notebook): {err.ename}: "
                             f"{_first_line(err.evalue)}; the rendered notebook with the traceback is {dst}"
                             ) from None
    except Exception as err:  # a dead kernel, a timeout, an unreadable notebook
        raise NotebookFailed(f"notebook {name}.ipynb stopped: {type(err).__name__}: {_first_line(err)}; "
                             f"partial output in {dst}") from None  # fmt: skip
    finally:
        if scrub and dst.is_file():
            scrub_paths(dst, scrub)
    return time.perf_counter() - start


def run_notebooks(names: Sequence[str] = NOTEBOOKS, *, profile: str = "quick",
                  data_dirs: Sequence[str | Path] | None = None, device: str = "auto", retrain: bool = False,
                  results_dir: str | Path | None = None, notebooks_dir: str | Path | None = None,
                  allow_random_init: bool | None = None, stream=None, seeds: int | None = None) -> dict[str, float]:
    """Run the notebooks in order with the same parameters; returns seconds per notebook. `seeds`: training seeds
    per row (default: the profile's, Profile.seeds_of).

    Before anything runs, a profile that needs pretrained weights checks that they are all on disk (the paper
    profile stops, naming the files, unless `allow_random_init`). Stops at the first failing notebook
    (NotebookFailed); the rendered notebooks are kept either way. `results_dir` None: default_results_dir.
    Rendered notebooks name this machine's folders by short names (scrub_paths).
    """
    notebooks_dir = Path(notebooks_dir or notebook_folder()).resolve()
    unknown = [n for n in names if not (notebooks_dir / f"{n}.ipynb").is_file()]
    if unknown:
        raise UserError(f"no notebook {unknown[0]!r} in {notebooks_dir}; choose from: "
                        + ", ".join(p.stem for p in sorted(notebooks_dir.glob("[0-9]*.ipynb"))))
    if seeds is not None and int(seeds) < 1:  # before any data is made or folder written
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    stream = stream or sys.stdout
    dirs = ensure_data(profile, data_dirs)
    if not random_init_allowed(profile, allow_random_init) and set(names) - set(BASELINE_NOTEBOOKS):
        check_pretrained_weights([e for e in FOUNDATION if EXPERIMENTS[e].pretrained], profile)
    out = outputs(results_dir, profile)
    results = out.root.parent
    parameters = dict(profile=profile, data_dirs=[str(d) for d in dirs], device=device, retrain=bool(retrain),
                      results_dir=str(results), allow_random_init=allow_random_init, seeds=seeds)  # fmt: skip
    scrub = machine_paths(results)
    echo = _Echo(stream)
    seconds: dict[str, float] = {}
    try:
        for i, name in enumerate(names, start=1):
            print(f"[{i}/{len(names)}] {name}.ipynb ({profile} profile)", file=stream, flush=True)
            seconds[name] = run_notebook(name, parameters=parameters, out=out, notebooks_dir=notebooks_dir,
                                         echo=echo, scrub=scrub)  # fmt: skip
            print(f"[{i}/{len(names)}] {name}.ipynb done in {seconds[name]:.0f} s", file=stream, flush=True)
    finally:
        _record(out.root / "reproduce.json", profile=profile, data_dirs=[short_path(d, scrub) for d in dirs],
                device=device, retrain=bool(retrain), seeds=seeds, seconds=seconds)
    return seconds


def _record(path: Path, *, seconds: dict[str, float], **settings) -> None:
    """reproduce.json: the settings of the last call and the latest time of every notebook run so far."""
    try:
        previous = json.loads(path.read_text()).get("seconds", {})
    except (OSError, ValueError):
        previous = {}
    merged = {**previous, **seconds}
    order = [n for n in NOTEBOOKS if n in merged] + [n for n in merged if n not in NOTEBOOKS]
    summary = dict(settings, seconds={n: merged[n] for n in order})
    path.write_text(json.dumps(summary, indent=2) + "\n")
