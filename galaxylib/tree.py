"""The Galaxy Zoo 2 decision tree as data: the 37 Kaggle columns, the 11 questions and their weighting.

Kaggle's targets are *cumulative* vote fractions: every question after Q1 is the conditional answer
distribution multiplied by the value of the answer that led to it (Q6 is the exception: Kaggle
renormalised it to sum to 1). Everything here follows ../shared/docs/gz_decision_tree.md and
Dieleman's `custom.py` (question slices and the order of the rescaling steps).

The array functions accept numpy arrays and torch tensors alike, so the synthetic-vote generator
(numpy) and Dieleman's output layer (torch, in galaxylib.models.heads) share one definition of the tree.
This module never imports torch: `synth` and `check-data` start in a fraction of a second without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANSWERS_PER_QUESTION = (3, 2, 2, 2, 4, 2, 3, 7, 3, 3, 6)

COLUMNS: tuple[str, ...] = tuple(
    f"Class{q}.{a}" for q, n in enumerate(ANSWERS_PER_QUESTION, start=1) for a in range(1, n + 1)
)
NUM_OUTPUTS = len(COLUMNS)  # 37
ID_COLUMN = "GalaxyID"


@dataclass(frozen=True)
class Question:
    """One question of the tree: where its answers sit among the 37 columns and what they sum to."""

    number: int  # 1..11
    text: str
    answers: tuple[str, ...]
    start: int  # first column index (0-based, GalaxyID excluded)
    parent: int | None  # column index whose value the answers sum to; None means they sum to 1

    @property
    def slice(self) -> slice:
        return slice(self.start, self.start + len(self.answers))

    @property
    def columns(self) -> tuple[str, ...]:
        return COLUMNS[self.slice]

    @property
    def parent_name(self) -> str:
        """What the answers sum to: the parent column's name, or "1"."""
        return "1" if self.parent is None else COLUMNS[self.parent]


def _question_table() -> tuple[Question, ...]:
    texts = (
        ("Smooth, features/disk or star?", ("smooth", "features or disk", "star or artifact")),
        ("Edge-on?", ("yes", "no")),
        ("Bar?", ("yes", "no")),
        ("Spiral pattern?", ("yes", "no")),
        ("Bulge prominence?", ("no bulge", "just noticeable", "obvious", "dominant")),
        ("Anything odd?", ("yes", "no")),
        ("How round (smooth)?", ("completely round", "in between", "cigar-shaped")),
        ("Odd feature?", ("ring", "lens or arc", "disturbed", "irregular", "other", "merger", "dust lane")),
        ("Edge-on bulge shape?", ("rounded", "boxy", "no bulge")),
        ("Arm winding?", ("tight", "medium", "loose")),
        ("Number of arms?", ("1", "2", "3", "4", "more than four", "can't tell")),
    )
    col = {name: i for i, name in enumerate(COLUMNS)}
    # Parent weight of each question (gz_decision_tree.md); Q6 is renormalised to 1 by Kaggle.
    parents = {
        1: None, 2: "Class1.2", 3: "Class2.2", 4: "Class2.2", 5: "Class2.2", 6: None,
        7: "Class1.1", 8: "Class6.1", 9: "Class2.1", 10: "Class4.1", 11: "Class4.1",
    }  # fmt: skip
    questions, start = [], 0
    for number, (text, answers) in enumerate(texts, start=1):
        parent = parents[number]
        questions.append(Question(number, text, answers, start, None if parent is None else col[parent]))
        start += len(answers)
    return tuple(questions)


QUESTIONS: tuple[Question, ...] = _question_table()
QUESTION_SLICES: tuple[slice, ...] = tuple(q.slice for q in QUESTIONS)
# Dieleman's rescaling order: a question is scaled only after its parent column holds its final value.
RESCALE_ORDER: tuple[int, ...] = (2, 3, 4, 5, 7, 8, 9, 10, 11)


def question_of_column(column: str | int) -> Question:
    """The question a column (name or index) belongs to."""
    index = COLUMNS.index(column) if isinstance(column, str) else int(column)
    for q in QUESTIONS:
        if q.start <= index < q.start + len(q.answers):
            return q
    raise KeyError(f"no column {column!r} among the 37 Galaxy Zoo columns")


def _xp(x):
    if isinstance(x, np.ndarray):
        return np
    import torch

    return torch


def _cat(parts: list, like):
    return np.concatenate(parts, 1) if _xp(like) is np else _xp(like).cat(parts, 1)


def parent_weights(targets):
    """(N, 37) cumulative targets -> (N, 11) parent weight of each question (1 for Q1 and Q6)."""
    ones = targets[:, :1] * 0 + 1
    cols = [ones if q.parent is None else targets[:, q.parent : q.parent + 1] for q in QUESTIONS]
    return _cat(cols, targets)


def question_sums(targets):
    """(N, 37) -> (N, 11): the sum of each question's answers."""
    sums = [targets[:, s].sum(1)[:, None] for s in QUESTION_SLICES]
    return _cat(sums, targets)


def conditionals_to_targets(conditionals):
    """Forward map: 11 conditional distributions (packed as (N, 37), each slice summing to 1) ->
    the 37 cumulative Kaggle values, rescaled in Dieleman's order."""
    columns = [conditionals[:, s] for s in QUESTION_SLICES]
    for number in RESCALE_ORDER:
        q = QUESTIONS[number - 1]
        parent_q = question_of_column(q.parent)
        parent_value = columns[parent_q.number - 1][:, q.parent - parent_q.start]
        columns[number - 1] = columns[number - 1] * parent_value[:, None]
    return _cat(columns, conditionals)


def targets_to_conditionals(targets, eps: float = 1e-12):
    """Inverse map: (N, 37) cumulative values -> ((N, 37) conditionals, (N, 11) reached mask).

    A question whose parent weight is 0 was never reached: its conditionals are set to 0 and its
    mask entry is False, because the distribution is undefined there.
    """
    xp = _xp(targets)
    weights = parent_weights(targets)
    reached = weights > eps
    parts = []
    for q in QUESTIONS:
        w = weights[:, q.number - 1 : q.number]
        safe = xp.where(w > eps, w, xp.ones_like(w))
        part = targets[:, q.slice] / safe
        parts.append(part * (w > eps))
    cond = _cat(parts, targets)
    return cond, reached


@dataclass(frozen=True)
class Violation:
    """A row whose answers do not sum to their parent weight."""

    galaxy_id: int
    question: int
    error: float  # sum of answers minus parent weight

    def __str__(self) -> str:
        q = QUESTIONS[self.question - 1]
        return (f"GalaxyID {self.galaxy_id}: Q{q.number} ({', '.join(q.columns)}) sums to {q.parent_name} "
                f"{self.error:+.4g} (tolerance exceeded)")  # fmt: skip


def check_constraints(targets: np.ndarray, galaxy_ids, tol: float = 1e-3) -> list[Violation]:
    """Every (galaxy, question) whose answers miss their parent weight by more than `tol`.

    Questions with any NaN (partial labels) are skipped: they cannot be checked, not violated.
    """
    targets = np.asarray(targets, dtype=np.float64)
    err = question_sums(targets) - parent_weights(targets)
    bad = np.abs(err) > tol  # NaN compares False, so partially labelled questions pass
    rows, qs = np.nonzero(bad)
    ids = np.asarray(galaxy_ids)
    return [Violation(int(ids[r]), int(q) + 1, float(err[r, q])) for r, q in zip(rows, qs, strict=True)]

