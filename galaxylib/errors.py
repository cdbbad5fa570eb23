"""The errors a user sees: each is printed by the command line as one line (or one line per problem) naming the
culprit (file, GalaxyID, column, option), with exit status 2, never as a traceback.

Library code raises these; `galaxylib.cli` catches `UserError` and prints it. Nothing here imports torch, so
every module can raise them cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class UserError(Exception):
    """A problem with the user's input or environment that the user can fix: one line, exit status 2."""


class DataError(UserError):
    """Input data that cannot be used as it is: the message lists every problem, one per line."""

    def __init__(self, message: str, problems: Sequence[Any] = ()):
        """`problems`: the galaxylib.data.problems.Problem objects behind the message, for code to inspect."""
        super().__init__(message)
        self.problems = list(problems)


class PretrainedWeightsMissing(UserError):
    """Pretrained weights were asked for but are not on this machine (and cannot be downloaded)."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class NotebookFailed(UserError):
    """A notebook raised: the message names the notebook, the cell and the error, in one line."""


class RunFolderBusy(UserError):
    """Another process is writing the run folder (it holds the folder's lock)."""


class DataChanged(UserError):
    """The data folders no longer hold the data a run folder was trained on."""


class CheckpointDamaged(UserError):
    """A checkpoint does not match its recorded checksum, or cannot be read."""
