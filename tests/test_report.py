"""Tables from metrics files: our numbers beside the paper's, the difference, provenance in every caption."""

import json

import numpy as np
import pandas as pd
import pytest

from galaxylib import report, tree
from galaxylib.experiments import EXPERIMENTS
from galaxylib.rundir import RunDir


def _fake_run(folder, experiment, val_rmse_tta, pretrained, seconds=2.5, source="synthetic"):
    """A run folder as train() leaves it, with made-up numbers."""
    folder.mkdir(parents=True)
    per_q = {f"Q{q.number}": 0.1 + q.number / 100 for q in tree.QUESTIONS}
    per_q["all"] = val_rmse_tta
    metrics = {
        "experiment": experiment, "profile": "smoke", "run_name": f"{experiment}-abc12345",
        "data_source": source, "n_train": 86, "n_val": 10, "pretrained": pretrained, "parameters": 1000,
        "epochs": 1, "img_size": 16, "val_rmse": val_rmse_tta + 0.001, "val_rmse_tta": val_rmse_tta,
        "tta_views": 16, "best_val_rmse": val_rmse_tta, "mean_predictor_rmse": 0.16,
        "per_question_rmse_tta": per_q, "seconds_per_epoch": seconds, "total_seconds": seconds,
        "device": "x86_64 (2 cores)", "precision": "fp32",
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    history = {
        "epoch": [1, 2],
        "train_loss": [0.04, 0.03],
        "train_rmse": [0.2, 0.17],
        "val_loss": [0.05, 0.04],
        "val_rmse": [0.22, 0.2],
        "lr": [1e-4, 5e-5],
        "seconds": [seconds] * 2,
        "images_per_s": [40.0] * 2,
    }
    pd.DataFrame(history).to_csv(folder / "history.csv", index=False)
    return folder


@pytest.fixture
def runs(tmp_path):
    return {
        "baseline": _fake_run(tmp_path / "baseline-1", "baseline", 0.1234, False),
        "baseline_cbam": _fake_run(tmp_path / "cbam-1", "baseline_cbam", 0.1111, False),
        "resnet50": _fake_run(tmp_path / "resnet50-1", "resnet50", 0.0999, False),  # weights were missing
        "dinov2_base": _fake_run(tmp_path / "dinov2-1", "dinov2_base", 0.0888, True),
    }


def test_scores_table_puts_the_paper_beside_ours_with_the_difference(runs):
    metrics = {e: RunDir(d).metrics() for e, d in runs.items()}
    paper = report.load_paper_reference()
    table = report.scores_table(metrics, paper, report.TABLE_II)
    assert list(table["Experiment"]) == [
        "baseline",
        "baseline_cbam",
        "resnet50",
        "dinov2_base",
    ]  # paper order
    for _, row in table.iterrows():
        m = metrics[row["Experiment"]]
        assert row["Val RMSE (TTA)"] == m["val_rmse_tta"]
        assert row["Val RMSE"] == m["val_rmse"]
        assert row["Run"] == m["run_name"]
        assert row["Paper score"] == paper.loc[row["Experiment"], "score"]
        assert row["Ours - paper"] == pytest.approx(m["val_rmse_tta"] - paper.loc[row["Experiment"], "score"])
        assert (
            row["Data"] == "synthetic" and row["Profile"] == "smoke" and row["Device"] == "x86_64 (2 cores)"
        )
    pretrained = dict(zip(table["Experiment"], table["Pretrained"], strict=True))
    assert pretrained["baseline"] == "no"
    assert pretrained["resnet50"] == "no (weights not found)"
    assert pretrained["dinov2_base"].startswith("yes")
    assert table.loc[table["Experiment"] == "baseline", "Paper score"].item() == 0.07742


def test_saved_tables_round_trip_and_carry_their_caption(runs, tmp_path):
    metrics = {e: RunDir(d).metrics() for e, d in runs.items()}
    table = report.scores_table(metrics, report.load_paper_reference(), report.TABLE_I)
    prov = report.common_provenance(metrics)
    caption = f"Table I. {prov.line()}. {prov.caveat()}"
    csv_path, md_path = report.save_table(table, tmp_path / "tables", "table1", caption)
    back = pd.read_csv(csv_path)
    assert back["Val RMSE (TTA)"].tolist() == table["Val RMSE (TTA)"].tolist()  # full precision in the CSV
    md = md_path.read_text()
    assert md.startswith(caption)
    assert "data: synthetic" in md and "profile: smoke" in md and "not a reproduction" in md
    assert "| Baseline + CBAM |" in md and "0.11110" in md
    assert md.count("\n|") == 1 + 1 + len(table)  # header, rule, rows


def test_per_question_table(runs):
    metrics = {e: RunDir(d).metrics() for e, d in runs.items()}
    per_q = report.per_question_table(metrics, ["resnet50", "baseline"])
    assert list(per_q["Experiment"]) == ["resnet50", "baseline"]
    assert per_q.loc[0, "Q11"] == pytest.approx(0.21) and per_q.loc[0, "all"] == 0.0999
    assert [c for c in per_q.columns if c.startswith("Q")] == [f"Q{i}" for i in range(1, 12)]


def test_paper_reference_agrees_with_the_experiments():
    """The typed-in paper numbers cross-checked against experiments.py and their own runtimes."""
    paper = report.load_paper_reference()
    assert set(paper.index) == set(report.TABLE_II)  # our ablation rows (report.ABLATIONS) are not the paper's
    for name, row in paper.iterrows():
        assert row["epochs"] == EXPERIMENTS[name].epochs, name
        if name != "dinov2_base":  # the paper's 17,400 s is 30 epochs x 580 s (see the note)
            assert row["total_runtime_s"] == row["epochs"] * row["seconds_per_epoch"], name
    assert paper.loc["dinov2_base", "total_runtime_s"] == 30 * 580
    assert paper["score"].min() == paper.loc["dinov2_base", "score"]  # the paper's best model
    assert paper["note"].str.contains("paper").all()


def test_caveats_never_present_synthetic_numbers_as_a_reproduction():
    assert "not a reproduction" in report.data_caveat("synthetic", "paper")
    assert "not comparable" in report.data_caveat("Kaggle sample", "paper")
    assert "not the paper's setting" in report.data_caveat("full Kaggle", "quick")
    assert "leaderboard" in report.data_caveat("full Kaggle", "paper")


def test_history_and_comparison_figures(runs, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    hist = {"Baseline": RunDir(runs["baseline"]).history()}
    fig = report.plot_history(hist, "title with provenance")
    assert fig._suptitle.get_text() == "title with provenance"
    path = report.save_figure(fig, tmp_path / "figures", "history")
    assert path.stat().st_size > 1000
    metrics = {e: RunDir(d).metrics() for e, d in runs.items()}
    table = report.scores_table(metrics, report.load_paper_reference())
    fig = report.plot_model_comparison(table, "comparison")
    assert report.save_figure(fig, tmp_path / "figures", "comparison").is_file()


def test_constraint_and_split_tables():
    labels = np.zeros((3, 37))
    labels[:, 0] = 1.0  # all smooth, nothing further answered...
    labels[:, tree.COLUMNS.index("Class6.2")] = 1.0  # ...and Q6 answered "no"
    labels[:, tree.COLUMNS.index("Class7.1")] = 1.0  # Q7 sums to its parent Class1.1
    labels[2, tree.COLUMNS.index("Class7.1")] = 0.5  # one violation of Q7
    ct = report.constraint_table(labels, np.array([1, 2, 3]))
    q7 = ct[ct["Question"].str.startswith("Q7 ")].iloc[0]
    assert q7["Violations (> 0.001)"] == 1 and q7["Max |sum - parent|"] == pytest.approx(0.5)
    assert ct["Violations (> 0.001)"].sum() == 1
    st = report.split_table(labels, np.array([0, 1]), np.array([2]))
    assert st["Galaxies"].tolist() == [2, 1] and st.loc[0, "Q1 smooth (share)"] == 1.0


def test_leading_answers():
    labels = np.zeros(37)
    labels[tree.COLUMNS.index("Class1.2")] = 0.7
    labels[tree.COLUMNS.index("Class1.1")] = 0.3
    labels[tree.COLUMNS.index("Class4.1")] = 0.5
    labels[tree.COLUMNS.index("Class6.2")] = 0.9  # Q6 is asked of everyone: not a leading answer
    assert report.leading_answers(labels) == ["Q1 features or disk 0.70", "Q4 yes 0.50"]
