"""The decision tree: columns, slices, parent weights, constraints, forward/inverse maps, Dieleman's layer."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from galaxylib import tree
from galaxylib.models import DecisionTreeNorm

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gz_sample"


def _sample_labels() -> pd.DataFrame:
    path = SAMPLE / "training_solutions_rev1.csv"
    if not path.exists():
        pytest.skip(f"real Kaggle sample not found at {path}")
    return pd.read_csv(path)


def test_columns_and_slices():
    assert len(tree.COLUMNS) == 37
    assert tree.COLUMNS[0] == "Class1.1" and tree.COLUMNS[13] == "Class6.1" and tree.COLUMNS[-1] == "Class11.6"
    dieleman = [(0, 3), (3, 5), (5, 7), (7, 9), (9, 13), (13, 15), (15, 18), (18, 25), (25, 28), (28, 31), (31, 37)]
    assert [(s.start, s.stop) for s in tree.QUESTION_SLICES] == dieleman
    parents = {q.number: (None if q.parent is None else tree.COLUMNS[q.parent]) for q in tree.QUESTIONS}
    assert parents == {1: None, 2: "Class1.2", 3: "Class2.2", 4: "Class2.2", 5: "Class2.2", 6: None,
                       7: "Class1.1", 8: "Class6.1", 9: "Class2.1", 10: "Class4.1", 11: "Class4.1"}
    assert tree.question_of_column("Class8.7").number == 8


def test_real_sample_satisfies_constraints_and_round_trips():
    df = _sample_labels()
    assert list(df.columns) == [tree.ID_COLUMN, *tree.COLUMNS]
    y = df[list(tree.COLUMNS)].to_numpy()
    assert tree.check_constraints(y, df[tree.ID_COLUMN], tol=1e-5) == []
    cond, reached = tree.targets_to_conditionals(y)
    # reached questions are proper distributions; the forward map rebuilds every row
    sums = tree.question_sums(cond)
    assert np.allclose(sums[reached], 1.0, atol=1e-4)
    assert np.allclose(sums[~reached], 0.0)
    assert np.allclose(tree.conditionals_to_targets(cond), y, atol=1e-5)


def test_check_constraints_names_galaxy_question_and_error():
    y = np.zeros((2, 37))
    y[:, 0] = 1.0  # smooth
    y[:, 13] = 1.0  # Q6 no-odd... Class6.1 = 1
    y[:, 15] = 1.0  # Q7 round
    y[:, 18] = 1.0  # Q8 ring (parent Class6.1 = 1)
    assert tree.check_constraints(y, [11, 22]) == []
    y[1, 15] = 0.9  # Q7 now sums to 0.9 instead of Class1.1 = 1
    (v,) = tree.check_constraints(y, [11, 22], tol=1e-3)
    assert (v.galaxy_id, v.question) == (22, 7) and v.error == pytest.approx(-0.1)
    assert "GalaxyID 22" in str(v) and "Q7" in str(v) and "Class1.1" in str(v)
    assert tree.check_constraints(y, [11, 22], tol=0.2) == []


def test_partial_labels_are_not_violations():
    y = np.full((1, 37), np.nan)
    y[0, :3] = [0.5, 0.5, 0.0]
    assert tree.check_constraints(y, [1]) == []


def test_unreached_questions_are_masked():
    y = np.zeros((1, 37))
    y[0, 2] = 1.0  # star/artifact: nothing below Q1 is reached
    y[0, 14] = 1.0  # Q6 still sums to 1 (Kaggle's normalisation)
    cond, reached = tree.targets_to_conditionals(y)
    assert reached[0].tolist() == [True, False, False, False, False, True, False, False, False, False, False]
    assert np.all(np.isfinite(cond))


def test_dieleman_layer_outputs_satisfy_constraints_numpy_and_torch_agree():
    torch.manual_seed(0)
    logits = torch.randn(64, 37)
    logits[:8] = -torch.rand(8, 37)  # all-negative questions too: uniform, not 0/0
    out = DecisionTreeNorm()(logits)
    assert out.shape == (64, 37) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert tree.check_constraints(out.double().numpy(), range(64), tol=1e-5) == []
    relu = np.maximum(logits.numpy().astype(np.float64), 0) + 1e-6
    cond = np.concatenate([relu[:, s] / relu[:, s].sum(1, keepdims=True) for s in tree.QUESTION_SLICES], 1)
    assert np.allclose(tree.conditionals_to_targets(cond), out.numpy(), atol=1e-5)


def test_dieleman_layer_is_differentiable():
    logits = torch.randn(4, 37, requires_grad=True)
    DecisionTreeNorm()(logits).square().sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
