"""The notebooks and the headless pipeline: clean sources, a full smoke reproduce, failures that say where."""

import ast
import io
import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from galaxylib import cli, reproduce
from galaxylib.errors import PretrainedWeightsMissing
from galaxylib.experiments import EXPERIMENTS, PROFILES, TABLE_II, resolve

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
COMMON_PARAMETERS = {"profile", "data_dirs", "device", "retrain", "results_dir", "seeds", "allow_random_init"}


def _parameters_cell(nb) -> nbformat.NotebookNode:
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    return tagged[0]


@pytest.mark.parametrize("name", reproduce.NOTEBOOKS)
def test_source_notebooks_are_clean_and_parameterised(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == reproduce.KERNEL_NAME
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{name}: commit notebooks without outputs"
            )
        assert "papermill" not in cell.metadata and "injected-parameters" not in cell.metadata.get("tags", [])
    body = ast.parse(_parameters_cell(nb).source).body
    assert all(isinstance(node, ast.AnnAssign) for node in body), "every parameter has a type annotation"
    names = {node.target.id for node in body}
    assert COMMON_PARAMETERS <= names
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {name[:2]}")


@pytest.mark.parametrize("name", reproduce.NOTEBOOKS)
def test_papermill_shows_a_type_and_a_description_for_every_parameter(name):
    """`papermill --help-notebook` as users run it: no 'Unknown type', no parameter without its help."""
    import papermill

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    inferred = papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    assert set(inferred) == {node.target.id for node in ast.parse(_parameters_cell(nb).source).body}
    for p in inferred.values():
        assert p["inferred_type_name"] not in ("None", "") and p["help"], f"{name}: {p['name']} lacks a type or help"


def test_echo_prefixes_lines_and_keeps_progress_bars_out_of_logs():
    sink = io.StringIO()
    echo = reproduce._Echo(sink)
    echo.notebook = "01_baseline"
    echo.write("== baseline: training\nepoch 1/")
    echo.write("2  val rmse 0.2\n")
    echo.write(
        "\repoch 1:  10%|#   | 1/10\repoch 1: 100%|####| 10/10\r" + " " * 20 + "\r"
    )  # tqdm, leave=False
    echo.write("epoch 2/2\n")
    assert sink.getvalue().splitlines() == [
        "[01_baseline] == baseline: training",
        "[01_baseline] epoch 1/2  val rmse 0.2",
        "[01_baseline] epoch 2/2",
    ]


def test_paper_profile_without_data_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["reproduce", "--profile", "paper", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert "Kaggle" in err and "--data-dir" in err and "README" in err


def test_missing_pretrained_weights_fall_back_to_random_init_and_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    data = tmp_path / "data"
    data.mkdir()
    cfg, run_dir, label = reproduce.plan_run("resnet50", "smoke", [data], tmp_path / "results")
    assert label == "no (weights not found)" and cfg.pretrained is False
    paper_cfg = resolve("resnet50", "smoke", data_dirs=[str(data.resolve())])
    assert (
        paper_cfg.pretrained and run_dir.name != paper_cfg.run_name()
    )  # never mistaken for a pretrained run
    assert run_dir.parent == tmp_path / "results" / "smoke" / "runs"
    cfg, _, label = reproduce.plan_run("resnet50_scratch", "smoke", [data], tmp_path / "results")
    assert label == "no" and not cfg.pretrained


def test_paper_profile_without_weights_stops_before_any_training(tmp_path, monkeypatch, capsys):
    """Missing weights at the paper profile: one message naming every file, before a notebook or a run starts."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    data = tmp_path / "data"
    data.mkdir()
    results = tmp_path / "results"
    rc = cli.main(["reproduce", "--profile", "paper", "--data-dir", str(data), "--results-dir", str(results)])
    assert rc == 2
    err = capsys.readouterr().err
    for name in ("resnet50-0676ba61.pth", "resnet101-63fe2227.pth", "convnext_large-ea097f82.pth",
                 "dinov2_vitb14_reg4_pretrain.pth"):
        assert name in err and str(tmp_path / "torch" / "hub" / "checkpoints" / name) in err
    assert "nothing was trained" in err and "--allow-random-init" in err
    assert not results.exists()
    # the notebooks' own entry point stops too, unless random initialisation is asked for
    with pytest.raises(PretrainedWeightsMissing, match="convnext_large-ea097f82.pth"):
        reproduce.plan_run("convnext_large", "paper", [data], results)
    cfg, _, label = reproduce.plan_run("convnext_large", "paper", [data], results, allow_random_init=True)
    assert not cfg.pretrained and label == "no (weights not found)"
    # a baseline-only reproduce needs no weights
    assert reproduce.random_init_allowed("paper") is False and reproduce.random_init_allowed("quick") is True


# ----------------------------------------------------------------------------------------------------------
# the whole pipeline, smoke profile (one reproduce call for all five notebooks)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A private cache for the synthetic data and image caches; the notebook kernels inherit it."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GALAXYLIB_CACHE_DIR", str(path))
        mp.setenv("HF_HUB_CACHE", str(path / "hf"))  # no pretrained weights: the fallback is exercised
        mp.setenv("TORCH_HOME", str(path / "torch"))
        yield path


@pytest.fixture(scope="module")
def smoke(cache_dir, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    rc = cli.main(["reproduce", "--profile", "smoke", "--results-dir", str(results)])
    yield rc, results / "smoke"
    for checkpoint in (results / "smoke" / "runs").glob("*/*.pt"):  # ~6 GB; pytest keeps 3 old tmp dirs
        checkpoint.unlink()


@pytest.mark.slow
def test_smoke_reproduce_renders_every_notebook_with_tables_and_figures(smoke):
    rc, out = smoke
    assert rc == 0
    for name in reproduce.NOTEBOOKS:
        nb = nbformat.read(out / "notebooks" / f"{name}.ipynb", as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and 'profile = "smoke"' in injected[0].source
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    for table in (
        "00_tree_constraints",
        "00_split",
        "01_baseline_scores",
        "02_table1",
        "03_foundation_models",
        "table1",
        "table2",
        "per_question_rmse",
        "paper_reference",
        "scores",
        "claims",
        "noise_floor",
    ):
        assert (out / "tables" / f"{table}.csv").is_file() and (out / "tables" / f"{table}.md").is_file()
    for figure in (
        "00_galaxies",
        "00_label_distributions",
        "00_views",
        "01_baseline_history",
        "02_history",
        "02_ablation_cam",
        "03_dinov2_history",
        "03_history",
        "03_ablation_cam",
        "04_model_comparison",
    ):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 5000, figure
    summary = json.loads((out / "reproduce.json").read_text())
    assert list(summary["seconds"]) == list(reproduce.NOTEBOOKS)


MAX_NOTEBOOK_BYTES = 3_000_000  # the galaxy and CAM figures are most of it (00: ~1.9 MB of synthetic galaxies)
PROGRESS_BAR = re.compile(r"\d+%\|")  # tqdm's "45%|####  |"


def _text_outputs(nb) -> list[tuple[str, str]]:
    """(kind, text) of every output that is not an image: streams by their name, rich outputs by mime type."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                found.append((output.name, output.text))
            elif output.output_type == "error":
                found.append(("error", f"{output.ename}: {output.evalue}"))
            else:
                found += [(mime, str(value)) for mime, value in output.get("data", {}).items()
                          if not mime.startswith("image/")]  # fmt: skip
    return found


@pytest.mark.slow
def test_rendered_notebooks_are_small_clean_and_name_no_machine_folders(smoke, cache_dir):
    """What a reader (or git) gets: no progress-bar redraws, no warnings or anything else on stderr, at most one
    line per epoch and per run plus a little, a bounded file size, and none of this machine's folders."""
    rc, out = smoke
    assert rc == 0
    runs = [resolve(e, "smoke", seed=s) for e in EXPERIMENTS for s in PROFILES["smoke"].seeds_of(e)]
    budget = sum(cfg.epochs + 2 for cfg in runs) + 15  # an epoch line each, a start or "reused" line, a summary
    machine = {"results dir": str(out.parent.resolve()), "cache dir": str(cache_dir.resolve()),
               "repo root": str(ROOT)}  # fmt: skip
    if len(Path.home().parts) > 1:
        machine["home folder"] = str(Path.home())
    for name in reproduce.NOTEBOOKS:
        path = out / "notebooks" / f"{name}.ipynb"
        assert path.stat().st_size < MAX_NOTEBOOK_BYTES, f"{name}: {path.stat().st_size:,} bytes"
        nb = nbformat.read(path, as_version=4)
        outputs = _text_outputs(nb)
        streams = [text for kind, text in outputs if kind in ("stdout", "stderr")]
        assert not [text for kind, text in outputs if kind in ("stderr", "error")], f"{name}: stderr or an error"
        assert not any("\r" in t or PROGRESS_BAR.search(t) for t in streams), f"{name}: a progress bar"
        assert not any("Warning" in t for _, t in outputs), f"{name}: a warning in the outputs"
        lines = sum(len(t.splitlines()) for t in streams)
        assert lines <= budget, f"{name}: {lines} lines of output (at most {budget})"
        sources = "\n".join(c.source for c in nb.cells)
        text = sources + "\n".join(t for _, t in outputs)
        for what, folder in machine.items():
            assert folder not in text, f"{name}: names the {what} {folder}"
        assert "<results>" in sources and "<cache>" in sources  # the injected parameters, scrubbed


def test_scrub_paths_replaces_this_machines_folders_most_specific_first(tmp_path, monkeypatch):
    """The folders a rendered notebook may mention (results inside the clone, the cache, home) by short names."""
    monkeypatch.setenv("GALAXYLIB_CACHE_DIR", str(tmp_path / "cache"))
    results = ROOT / "results"  # the default: inside the clone, so "<results>" must win over "<repo>"
    found = reproduce.machine_paths(results)
    assert found[str(results.resolve())] == "<results>" and found[str(ROOT)] == "<repo>"
    assert found[str((tmp_path / "cache").resolve())] == "<cache>" and found[str(Path.home())] == "~"
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text(json.dumps({"text": [f"{results}/quick/runs/baseline-seed1", f"{tmp_path}/cache/synthetic",
                                             f"{ROOT}/galaxylib/train.py", f"{Path.home()}/.torch"]}))
    reproduce.scrub_paths(notebook, found)
    assert json.loads(notebook.read_text())["text"] == [
        "<results>/quick/runs/baseline-seed1", "<cache>/synthetic", "<repo>/galaxylib/train.py", "~/.torch"]
    assert reproduce.short_path(f"{tmp_path}/cache/synthetic/n120", found) == "<cache>/synthetic/n120"


def _runs_of(out, row) -> list[dict]:
    return [json.loads((out / "runs" / name / "metrics.json").read_text()) for name in row["Run"].split(", ")]


@pytest.mark.slow
def test_smoke_tables_are_the_runs_metrics_over_their_seeds(smoke):
    rc, out = smoke
    assert rc == 0
    table2 = pd.read_csv(out / "tables" / "table2.csv")
    assert list(table2["Experiment"]) == list(TABLE_II)
    for _, row in table2.iterrows():
        seeds = _runs_of(out, row)
        assert [m["seed"] for m in seeds] == list(PROFILES["smoke"].seeds_of(row["Experiment"]))
        assert row["Seeds"] == len(seeds)
        assert {m["experiment"] for m in seeds} == {row["Experiment"]}
        metrics = seeds[0]
        for column, key in (("Val RMSE (TTA)", "val_rmse_tta"), ("Val RMSE", "val_rmse")):
            mean = np.mean([m[key] for m in seeds])
            assert row[column] == pytest.approx(mean, rel=1e-12), (row["Experiment"], column)
        for column, key in (("Epochs", "epochs"), ("Image px", "img_size"), ("Noise floor", "noise_floor")):
            assert row[column] == pytest.approx(metrics[key], rel=1e-12), (row["Experiment"], column)
        assert row["95% CI low"] <= row["Val RMSE (TTA)"] + 1e-6 and row["Val RMSE (TTA)"] <= row["95% CI high"] + 1e-6
        assert row["Ours - paper"] == pytest.approx(row["Val RMSE (TTA)"] - row["Paper score"], rel=1e-12)
        assert row["Data"] == "synthetic" == metrics["data_source"] and row["Profile"] == "smoke"
        paper_pretrained = EXPERIMENTS[row["Experiment"]].pretrained
        assert row["Pretrained"] == ("no (weights not found)" if paper_pretrained else "no")
    per_q = pd.read_csv(out / "tables" / "per_question_rmse.csv")
    assert per_q["all"].tolist()[:-1] == pytest.approx(table2["Val RMSE (TTA)"].tolist(), rel=1e-12)
    assert per_q["Model"].iloc[-1].startswith("label-noise floor")
    md = (out / "tables" / "table2.md").read_text()
    assert "data: synthetic" in md and "profile: smoke" in md and "not a reproduction" in md


@pytest.mark.slow
def test_smoke_claims_table_has_every_claim_with_a_verdict_and_its_labels(smoke):
    from galaxylib import report

    rc, out = smoke
    assert rc == 0
    claims = pd.read_csv(out / "tables" / "claims.csv")
    assert list(claims["Claim"]) == [c.name for c in report.PAPER_CLAIMS]
    assert set(claims["Verdict"]) <= set(report.VERDICTS)
    assert (claims["Data"] == "synthetic").all() and (claims["Profile"] == "smoke").all()
    by = claims.set_index("Claim")
    assert by.loc["CBAM improves the baseline", "Seeds (a/b)"] == "2/2"  # the smoke profile's two seeds
    assert by.loc["DINOv2 is the best of all", "Verdict"] == report.NOT_RUN  # no pretrained weights here
    md = (out / "tables" / "claims.md").read_text()
    assert "data: synthetic" in md and "profile: smoke" in md and "not run here" in md


@pytest.mark.slow
def test_rerun_reuses_finished_runs(smoke, capsys):
    rc, out = smoke
    assert rc == 0
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.json")}
    assert len(mtimes) == sum(len(PROFILES["smoke"].seeds_of(e)) for e in EXPERIMENTS)
    assert (
        cli.main(
            ["reproduce", "--profile", "smoke", "--results-dir", str(out.parent), "--only", "04_paper_tables"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    # one line per row of Table II, whatever its number of seeds
    assert "[04_paper_tables]" in printed and printed.count(" reused, seed") == len(TABLE_II)
    assert printed.count("finished run") == len(TABLE_II)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.json")} == mtimes


@pytest.mark.slow
def test_a_failing_notebook_stops_the_pipeline_and_says_where(cache_dir, tmp_path, monkeypatch, capsys):
    broken = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, broken)
    nb = nbformat.read(broken / "01_baseline.ipynb", as_version=4)
    at = nb.cells.index(_parameters_cell(nb)) + 1
    nb.cells.insert(at, nbformat.v4.new_code_cell('raise RuntimeError("deliberately broken cell")'))
    nbformat.write(nb, broken / "01_baseline.ipynb")
    monkeypatch.setattr(reproduce, "notebook_folder", lambda: broken)
    rc = cli.main(
        [
            "reproduce",
            "--profile",
            "smoke",
            "--results-dir",
            str(tmp_path / "results"),
            "--only",
            "01_baseline",
            "02_cbam_ablation",
        ]
    )
    assert rc != 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1  # one line: notebook, cell, error, where to read the traceback
    assert (
        "01_baseline.ipynb" in err[0]
        and "In [3]" in err[0]
        and "RuntimeError: deliberately broken cell" in err[0]
    )
    rendered = tmp_path / "results" / "smoke" / "notebooks" / "01_baseline.ipynb"
    assert str(rendered) in err[0]
    text = rendered.read_text()
    assert "deliberately broken cell" in text and "papermill-error-cell-tag" in text
    assert not (tmp_path / "results" / "smoke" / "notebooks" / "02_cbam_ablation.ipynb").exists()  # stopped
    assert os.listdir(tmp_path / "results" / "smoke" / "runs") == []  # nothing trained after the failure


def test_reproduce_runs_this_interpreter_whatever_kernels_are_registered(tmp_path, monkeypatch):
    """A 'python3' kernelspec of another environment (e.g. `ipykernel install --user` elsewhere) must not be
    what reproduce runs the notebooks with; and reproduce registers no kernel anywhere."""
    import sys

    from jupyter_client.kernelspec import KernelSpecManager

    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {"argv": ["/elsewhere/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "old", "language": "python"}  # fmt: skip
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == "/elsewhere/bin/python"  # the trap is set
    manager = reproduce._kernel_manager_class()(kernel_name="python3")
    assert manager.kernel_spec.argv[0] == sys.executable
    assert not hasattr(reproduce, "ensure_kernel")
