"""The evidence behind the tables, built from small fake runs: run folders with per-galaxy predictions, the labels
they are matched to, the scores over seeds with intervals and the noise floor, and the claims table with its
verdicts."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from galaxylib import layout, report, synth, tree
from galaxylib.prediction import write_submission

N = 120  # validation galaxies of the fake runs


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A synthetic label file (valid under the tree) with its infinite-volunteer values; no images needed."""
    folder = tmp_path_factory.mktemp("data")
    labels, expected = [], []
    for i in range(N + 40):
        _, lab, exp = synth.make_galaxy(5, i, 40)
        labels.append(lab)
        expected.append(exp)
    ids = np.arange(100_001, 100_001 + N + 40)
    for name, values in (("training_solutions_rev1.csv", labels), (report.evidence.EXPECTED_CSV, expected)):
        frame = pd.DataFrame(np.round(values, 6), columns=list(tree.COLUMNS))
        frame.insert(0, tree.ID_COLUMN, ids)
        frame.to_csv(folder / name, index=False)
    (folder / layout.SYNTHETIC_MARKER).write_text("{}")
    return folder


def _fake_run(folder, experiment, seed, noise, *, data_dir, ids, pretrained=False, one_view_noise=None):
    """A finished run as train() leaves it: metrics.json and the two prediction files, errors of sd `noise`."""
    labels = pd.read_csv(data_dir / "training_solutions_rev1.csv").set_index(tree.ID_COLUMN).loc[ids].to_numpy()
    rng = np.random.default_rng(hash((experiment, seed)) % 2**32)
    common = np.random.default_rng(0).standard_normal(labels.shape)  # the hard galaxies are hard for every model
    folder.mkdir(parents=True)
    for name, sd in (("val_predictions.csv", noise), ("val_predictions_1view.csv", one_view_noise or noise)):
        err = sd * (0.8 * common + 0.6 * rng.standard_normal(labels.shape))
        write_submission(ids, np.clip(labels + err, 0, 1), folder / name)
    preds = report.read_predictions(folder / "val_predictions.csv").to_numpy()
    from galaxylib.metrics import noise_floor, rmse

    metrics = {"experiment": experiment, "profile": "smoke", "run_name": f"{experiment}-seed{seed}-abc",
               "data_source": "synthetic", "device": "x86_64 (2 cores)", "seed": seed, "pretrained": pretrained,
               "epochs": 1, "img_size": 16, "n_train": 500, "n_val": len(ids), "val_rmse": rmse(preds, labels),
               "val_rmse_tta": rmse(preds, labels), "mean_predictor_rmse": 0.16, "seconds_per_epoch": 1.0,
               "total_seconds": 1.0, "noise_floor": noise_floor(labels).rmse}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("runs")
    ids = np.arange(100_001, 100_001 + N)
    other = np.arange(100_001 + N - 5, 100_001 + N + 40)  # shares only 5 galaxies with the others

    def make(exp, seeds, noise, **kw):
        return [_fake_run(root / f"{exp}-{s}", exp, s, noise, data_dir=data_dir, ids=kw.pop("ids", ids), **kw)
                for s in seeds]  # fmt: skip

    return {
        "baseline": make("baseline", (3, 1, 2), 0.10, one_view_noise=0.12),  # listed out of order on purpose
        "baseline_cbam": make("baseline_cbam", (1, 2, 3), 0.08),
        "baseline_tree": make("baseline_tree", (1, 2), 0.13),
        "resnet50_scratch": make("resnet50_scratch", (1,), 0.10, ids=other),
        "resnet50": make("resnet50", (1,), 0.09),  # pretrained, but its weights were "not found"
        "resnet101": make("resnet101", (1,), 0.09, pretrained=True),
        "convnext_large": make("convnext_large", (1,), 0.07, pretrained=True),
        "dinov2_base": [],  # declared but not run
    }


@pytest.fixture(scope="module")
def evidence(runs, data_dir):
    return report.collect_evidence(runs, [data_dir])


def test_evidence_reads_every_seed_in_seed_order_and_the_labels_they_predicted(evidence, data_dir):
    assert evidence.rows["baseline"].seeds == [1, 2, 3]
    assert set(evidence.rows["baseline"].predictions) == {report.TTA, report.ONE_VIEW}
    assert not evidence.has("dinov2_base") and evidence.has("baseline_tree", report.ONE_VIEW)
    ids = evidence.galaxies(["baseline", "resnet50_scratch"])
    assert len(ids) == 5 and evidence.truth(ids).shape == (5, 37)
    assert evidence.expected is not None and len(evidence.labels) == N + 40
    assert "pretrained weights not found" in evidence.rows["resnet50"].not_the_papers_setting()
    assert evidence.rows["resnet101"].not_the_papers_setting() == ""


def test_scores_table_over_seeds_with_intervals_and_the_noise_floor(runs, evidence):
    metrics = {e: [json.loads((d / "metrics.json").read_text()) for d in dirs] for e, dirs in runs.items()}
    table = report.scores_table(metrics, report.load_paper_reference(), evidence=evidence).set_index("Experiment")
    assert "dinov2_base" not in table.index  # a row not run has no scores to show
    base = table.loc["baseline"]
    per_seed = [m["val_rmse_tta"] for m in metrics["baseline"]]
    assert base["Seeds"] == 3 and base["Val RMSE (TTA)"] == pytest.approx(np.mean(per_seed))
    assert base["SD over seeds"] == pytest.approx(np.std(per_seed, ddof=1))
    assert base["95% CI low"] < base["Val RMSE (TTA)"] < base["95% CI high"]
    assert math.isnan(table.loc["resnet50", "SD over seeds"])  # one seed: no spread to show
    assert 0.02 < base["Noise floor"] < 0.06 and base["True noise floor"] == pytest.approx(base["Noise floor"], rel=0.3)
    assert base["Paper score"] == report.load_paper_reference().loc["baseline", "score"]
    floors = report.noise_floor_table(evidence)
    assert len(floors) == 2  # two validation sets: the shared one and resnet50_scratch's
    assert (floors["Votes assumed"] == 40).all() and floors["True noise floor"].notna().all()


def test_claims_table_from_fake_runs(evidence):
    paper = report.load_paper_reference()
    table = report.claims_table(evidence, n_boot=400)
    assert list(table["Claim"]) == [c.name for c in report.PAPER_CLAIMS]  # none dropped
    assert set(table["Verdict"]) <= set(report.VERDICTS)
    assert (table["Data"] == "synthetic").all() and (table["Profile"] == "smoke").all()
    by = table.set_index("Claim")

    cbam = by.loc["CBAM improves the baseline"]
    assert cbam["Verdict"] == report.SUPPORTED and cbam["Seeds (a/b)"] == "3/3" and cbam["Galaxies"] == N
    assert cbam["Paper difference"] == pytest.approx(paper.loc["baseline_cbam", "score"]
                                                     - paper.loc["baseline", "score"])  # fmt: skip
    assert cbam["95% CI low"] <= cbam["Ours difference"] <= cbam["95% CI high"] < 0

    tta = by.loc["16-view TTA beats one view (baseline)"]
    assert tta["Verdict"] == report.SUPPORTED and math.isnan(tta["Paper difference"])  # the paper gives no number
    tree_layer = by.loc["Decision-tree output layer does worse than the sigmoid (our ablation)"]
    assert tree_layer["Verdict"] == report.SUPPORTED and tree_layer["Seeds (a/b)"] == "2/3"

    pretrained = by.loc["Pretrained ResNet50 beats ResNet50 from scratch"]
    assert pretrained["Verdict"] == report.NOT_RUN and "pretrained weights not found" in pretrained["Why"]
    assert pd.isna(pretrained["Ours difference"])  # no numbers for a claim that was not tested
    assert by.loc["DINOv2 is the best of all", "Verdict"] == report.NOT_RUN
    assert "no runs of DINOv2" in by.loc["DINOv2 is the best of all", "Why"]


def test_claims_need_enough_shared_galaxies_and_every_rival(evidence):
    claims = (report.Claim("scratch vs baseline", "resnet50_scratch", "baseline"),
              report.Claim("ConvNeXt is the best", "convnext_large", None,
                           rivals=("baseline", "baseline_cbam", "resnet101", "dinov2_base")))  # fmt: skip
    table = report.claims_table(evidence, claims, n_boot=300).set_index("Claim")
    few = table.loc["scratch vs baseline"]
    assert few["Verdict"] == report.NOT_RESOLVED and few["Galaxies"] == 5 and "only 5" in few["Why"]
    best = table.loc["ConvNeXt is the best"]  # beats every rival that ran, but DINOv2 did not run
    assert best["Verdict"] == report.NOT_RESOLVED and "cannot check every rival" in best["Why"]
    assert "closest: Baseline + CBAM" in best["B"]  # the rival nearest ConvNeXt (0.08 vs 0.07)
    everyone = report.claims_table(evidence, (report.Claim("best", "convnext_large", None,
                                                           rivals=("baseline", "resnet101")),), n_boot=300)  # fmt: skip
    assert everyone["Verdict"].item() == report.SUPPORTED


@pytest.mark.parametrize(
    ("paper", "ours", "interval", "expected"),
    [
        (-0.00049, -0.0006, (-0.0010, -0.0002), report.SUPPORTED),
        (-0.00049, 0.0004, (0.0001, 0.0008), report.CONTRADICTED),
        (-0.00049, -0.0001, (-0.0004, 0.0002), report.NOT_RESOLVED),
        (-0.00049, -0.0002, (-0.0004, 0.0), report.NOT_RESOLVED),  # touching 0 is not excluding it
        (0.00007, 0.0003, (0.0001, 0.0005), report.SUPPORTED),  # the paper: a worse; so do we
        (0.00007, -0.0003, (-0.0005, -0.0001), report.CONTRADICTED),
    ],
)
def test_verdict_rule(paper, ours, interval, expected):
    assert report.verdict(paper, ours, interval) == expected


def test_verdict_with_a_direction_or_a_margin_and_its_errors():
    assert report.verdict(None, -0.001, (-0.002, -0.0005), direction=-1) == report.SUPPORTED
    assert report.verdict(math.nan, 0.001, (0.0005, 0.002), direction=-1) == report.CONTRADICTED
    assert report.verdict(0.00007, 0.0001, (-0.0001, 0.0002), margin=0.0003) == report.SUPPORTED
    assert report.verdict(0.00007, 0.0001, (-0.0001, 0.0005), margin=0.0003) == report.NOT_RESOLVED
    assert report.verdict(0.00007, 0.0008, (0.0005, 0.0010), margin=0.0003) == report.CONTRADICTED
    with pytest.raises(ValueError, match="no claimed direction"):
        report.verdict(None, 0.0, (-1.0, 1.0))
    with pytest.raises(ValueError, match="outside"):
        report.verdict(-0.001, 0.5, (-1e-3, 1e-3))


@pytest.mark.slow
def test_study_writes_tables_only_with_a_held_out_set_and_its_command(synth_dir, tmp_path, capsys):
    from galaxylib.cli import main

    assert main(["study", "--name", "demo", "--profile", "smoke", "--experiments", "baseline", "baseline_cbam",
                 "--holdout", "10", "--seeds", "1", "--data-dir", str(synth_dir), "--results-dir", str(tmp_path),
                 "--device", "cpu", "--quiet"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "held out: Baseline:" in printed and "of the mean predictor's" in printed
    root = tmp_path / "demo"
    names = {p.stem for p in (root / "tables").glob("*.md")}
    assert {"scores", "claims", "noise_floor", "holdout", "claims_holdout"} <= names
    assert not list(root.rglob("*.png")) and not (root / "notebooks").exists()  # numbers only
    held = pd.read_csv(root / "tables" / "holdout_ids.csv")["GalaxyID"]
    for run in (root / "runs").iterdir():
        split = pd.read_csv(run / "split.csv")
        assert not set(held) & set(split["GalaxyID"])  # never trained or validated on
        assert len(pd.read_csv(run / "holdout_predictions.csv")) == 10
    holdout = pd.read_csv(root / "tables" / "holdout.csv").set_index("Experiment")
    assert holdout.loc["baseline", "Held-out galaxies"] == 10 and holdout.loc["baseline", "Ratio"] > 0
    manifest = (root / "RESULTS.md").read_text()
    assert "python -m galaxylib study --name demo" in manifest and "profile: smoke" in manifest
    assert "data: synthetic" in manifest and "| Baseline | 1 |" in manifest
