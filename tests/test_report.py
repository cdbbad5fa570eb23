"""Tables from metrics files: our numbers beside the paper's, the difference, provenance in every caption."""

import json
import re

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


# ----------------------------------------------------------------------------------------------------------
# tables for reading (report.display)

DECIMALS = re.compile(r"\d\.(\d+)")


def _cells(table: pd.DataFrame) -> list[str]:
    return [str(v) for v in table.to_numpy().ravel()]


def _assert_readable(table: pd.DataFrame, max_decimals: int = 5):
    for cell in _cells(table):
        assert cell.strip() and cell.strip().lower() not in ("nan", "none", "<na>"), f"empty cell {cell!r}"
        assert all(len(d) <= max_decimals for d in DECIMALS.findall(cell)), f"unrounded {cell!r}"
    headers = [c for level in (table.columns.levels if isinstance(table.columns, pd.MultiIndex) else [table.columns])
               for c in level]  # fmt: skip
    assert not [h for h in headers if re.search(r"[a-z]_[a-z]", str(h))], "snake_case header"


def _scores(runs, source: str):
    metrics = {}
    for e, d in runs.items():
        m = RunDir(d).metrics()
        m["data_source"] = source
        metrics[e] = [m, {**m, "val_rmse_tta": m["val_rmse_tta"] + 0.002, "seed": 2}]  # two seeds
    metrics["baseline_tree"] = [dict(metrics["baseline"][0], experiment="baseline_tree")]  # not in the paper
    return report.scores_table(metrics, report.load_paper_reference(), [*report.TABLE_II, "baseline_tree"])


def test_readable_scores_keep_the_papers_numbers_apart_unless_the_data_is_full_kaggle(runs):
    for source in ("synthetic", "Kaggle sample"):
        table = report.readable(_scores(runs, source), "scores")
        _assert_readable(table)
        groups = {g for g, _ in table.columns}
        ours = next(g for g in groups if g.startswith("Ours"))
        assert f"{source} data" in ours and "smoke profile" in ours and "x86_64 (2 cores)" in ours
        paper = next(g for g in groups if g.startswith("Paper"))
        assert "full Kaggle" in paper and "RTX A6000" in paper
        assert not any("−" in name or "-" in name for _, name in table.columns if "paper" in name.lower()), (
            "no difference column beside unlike data")
        assert (paper, "s / epoch") in table.columns and (ours, "s / epoch") in table.columns  # one machine each
        row = table[table[("", "Model")] == "Baseline"].iloc[0]
        assert row[(ours, "Val RMSE (TTA), mean ± sd over seeds")] == "0.12440 ± 0.00141"  # 0.1234, 0.1254
        assert row[(paper, "RMSE (Kaggle private LB)")] == "0.07742" and row[(ours, "Training images")] == "86 × 16 px"
        tree_row = table[table[("", "Model")].str.startswith("Baseline + decision-tree")].iloc[0]
        assert tree_row[(paper, "RMSE (Kaggle private LB)")] == report.DASH
        assert any("no such row" in n for n in table.attrs["notes"])  # every dash says why
        assert any("not compared" in n for n in table.attrs["notes"])
    full = report.readable(_scores(runs, "full Kaggle"), "scores")
    _assert_readable(full)
    diff = full[("", "Ours − paper (RMSE)")]
    assert diff.iloc[0] == f"{0.1244 - 0.07742:+.5f}"


def test_readable_paper_reference_names_both_resnet50_rows_and_has_no_nan():
    table = report.readable(report.paper_table(report.load_paper_reference(), report.TABLE_II), "paper")
    _assert_readable(table)
    models = table[("", "Model")].tolist()
    assert "ResNet50 (from scratch)" in models and "ResNet50 (ImageNet)" in models and len(set(models)) == len(models)
    group = next(g for g, _ in table.columns if g)
    assert table.loc[models.index("ResNet50 (from scratch)"), (group, "Pretrained on")] == "none (from scratch)"
    assert table.loc[models.index("ConvNeXt Large"), (group, "s / epoch")] == "1,500.0"
    assert any("30 epochs" in n for n in table.attrs["notes"])  # DINOv2's runtime note
    md = report.markdown(report.paper_table(report.load_paper_reference(), report.TABLE_II), "paper")
    assert "nan" not in md.lower() and not re.search(r"[a-z]_[a-z]", md.splitlines()[0])


def test_readable_claims_drop_the_paper_in_ci_column_unless_comparable():
    claims = pd.DataFrame({
        "Claim": ["CBAM improves the baseline", "DINOv2 is the best of all"], "A": ["x", "y"], "B": ["z", "w"],
        "Paper A": [0.07693, 0.07251], "Paper B": [0.07742, None], "Paper difference": [-0.00049, np.nan],
        "Ours A": [0.12, None], "Ours B": [0.121, None], "Ours difference": [-0.001234567, None],
        "95% CI low": [-0.0021, None], "95% CI high": [0.0003, None], "Paper diff in CI": [True, None],
        "Galaxies": pd.array([120, None], dtype="Int64"), "Seeds (a/b)": ["3/3", None],
        "Verdict": [report.NOT_RESOLVED, report.NOT_RUN], "Why": ["Table I", "no runs"],
        "Data": ["synthetic"] * 2, "Profile": ["quick"] * 2,
    })  # fmt: skip
    table = report.readable(claims, "claims")
    _assert_readable(table)
    assert not any("our CI" in name for _, name in table.columns)
    ours = next(g for g, _ in table.columns if g.startswith("Ours"))
    assert table.loc[0, (ours, "a − b")] == "-0.00123" and table.loc[0, (ours, "95% CI (paired)")] == (
        "[-0.00210, +0.00030]")
    assert table.loc[1, (ours, "a − b")] == report.DASH and len(table.attrs["notes"]) == 2
    claims["Data"] = "full Kaggle"
    assert table.shape[1] + 1 == report.readable(claims, "claims").shape[1]


def test_show_is_a_styler_without_index_with_its_notes(runs):
    styler = report.show(_scores(runs, "synthetic"), kind="scores")
    html = styler.to_html()
    assert "Training images" in html and "0.07742" in html and "nan" not in html.lower()
    assert "the paper has no such row" in html  # the notes under the table
    assert 'class="row_heading' not in html  # no index column
    with pytest.raises(ValueError, match="unknown table kind"):
        report.readable(_scores(runs, "synthetic"), "nonsense")


def test_saved_markdown_is_the_reading_table_and_the_csv_keeps_every_column(runs, tmp_path):
    scores = _scores(runs, "synthetic")
    csv_path, md_path = report.save_table(scores, tmp_path, "scores", "Caption. data: synthetic", kind="scores")
    assert list(pd.read_csv(csv_path).columns) == list(scores.columns)  # "Ours - paper" too: code reads it
    md = md_path.read_text()
    assert md.startswith("Caption. data: synthetic\n\n| Model |")
    assert "Ours - paper" not in md and "Ours − paper" not in md and "| Paper: RMSE (Kaggle private LB) |" in md
    assert not re.search(r"\d\.\d{6,}", md) and "nan" not in md.lower()
    back, caption = report.load_table(tmp_path, "scores")
    assert caption == "Caption. data: synthetic" and back["Val RMSE (TTA)"].tolist() == pytest.approx(
        scores["Val RMSE (TTA)"].tolist(), rel=1e-12)


def test_generic_and_per_question_tables_read_well():
    labels = np.zeros((3, 37))
    labels[:, 0] = 1.0
    labels[:, tree.COLUMNS.index("Class6.2")] = 1.0
    split = report.readable(report.split_table(labels, np.array([0, 1]), np.array([2])))
    assert split.loc[0, "Q1 smooth"] == "100.0%" and split.loc[0, "Galaxies"] == "2"
    per_q = pd.DataFrame({"Model": ["Baseline", "label-noise floor (40 votes)"], "Experiment": ["baseline", ""],
                          "Seeds": pd.array([3, None], dtype="Int64"),
                          **{f"Q{q.number}": [0.123456, 0.04] for q in tree.QUESTIONS}, "all": [0.12, 0.041]})
    table = report.readable(per_q, "per_question")
    _assert_readable(table, max_decimals=4)
    assert "Experiment" not in table.columns and table.loc[1, "Seeds"] == report.DASH
    assert table.loc[0, "Q1"] == "0.1235" and any("Q11" in n for n in table.attrs["notes"])


def test_summary_in_words_names_the_setting_and_no_paper_difference_off_kaggle(runs):
    text = report.summarise_scores(_scores(runs, "synthetic"))
    assert "synthetic data, smoke profile" in text and "**Best row.** DINOv2" in text
    assert "paper's score for it" not in text and "not compared" in text
    assert "ResNet50: pretrained weights not found" in text.replace(", ResNet50", "ResNet50")
    assert "paper's score for it" in report.summarise_scores(_scores(runs, "full Kaggle"))


def test_comparison_figure_sets_the_papers_bars_beside_ours_only_on_full_kaggle(runs):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.container import BarContainer

    for source, bar_groups in (("synthetic", 1), ("full Kaggle", 2)):
        fig = report.plot_model_comparison(_scores(runs, source).iloc[:-1], "comparison")
        ours_rmse, right, ours_time, paper_time = fig.axes
        bars = [c for c in ours_rmse.containers if isinstance(c, BarContainer)]
        assert len(bars) == bar_groups  # ours alone, or ours and the paper's
        assert "seconds per epoch" in ours_time.get_title() and "x86_64 (2 cores)" in ours_time.get_title()
        assert "RTX A6000" in paper_time.get_title()
        assert ("not comparable" in right.get_title()) == (source == "synthetic")


def test_history_legend_sits_outside_the_axes(runs):
    import matplotlib

    matplotlib.use("Agg")
    fig = report.plot_history({"a": RunDir(runs["baseline"]).history(), "b": RunDir(runs["resnet50"]).history()},
                              "title", noise_floor=0.04)
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    for ax in fig.axes:
        assert not legend.overlaps(ax.get_window_extent()), "the legend covers a panel"
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"a", "b", "training (augmented views)", "validation (one centre crop)"} <= set(texts)
    assert any("noise floor" in t for t in texts)
