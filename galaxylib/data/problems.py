"""Problems found in input data: located precisely, collected across all folders, reported together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from galaxylib.errors import DataError

MAX_LISTED = 20  # problems printed in one error message; the rest are counted


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, located as precisely as possible."""

    file: Path
    what: str
    galaxy_id: int | None = None  # None: not tied to one galaxy, so skip_bad cannot skip it
    column: str | None = None

    def reason(self) -> str:
        """Where and what, without the GalaxyID (used in `GalaxyData.skipped`, which holds the id already)."""
        where = [str(self.file)] + ([f"column {self.column}"] if self.column else [])
        return ": ".join([*where, self.what])

    def __str__(self) -> str:
        where = [str(self.file)]
        where += [f"GalaxyID {self.galaxy_id}"] if self.galaxy_id is not None else []
        where += [f"column {self.column}"] if self.column else []
        return ": ".join([*where, self.what])


def format_problems(problems: list[Problem], skip_bad: bool) -> str:
    """One header line and one line per problem (file-level ones first), capped at MAX_LISTED."""
    fatal = [p for p in problems if p.galaxy_id is None]
    per_galaxy = [p for p in problems if p.galaxy_id is not None]
    per_galaxy.sort(key=lambda p: (str(p.file), p.galaxy_id))
    galaxies = len({p.galaxy_id for p in per_galaxy})
    head = f"{len(problems)} problem{'s' * (len(problems) != 1)} in the data"
    if fatal and skip_bad:
        head += f" ({len(fatal)} not tied to one galaxy, which --skip-bad cannot skip)"
    elif not fatal:
        noun = "galaxy" if galaxies == 1 else "galaxies"
        head += f" (--skip-bad / skip_bad=True would leave out the {galaxies} {noun})"
    ordered = fatal + per_galaxy
    lines = [head + ":"] + [f"  {p}" for p in ordered[:MAX_LISTED]]
    if len(ordered) > MAX_LISTED:
        lines.append(f"  ... and {len(ordered) - MAX_LISTED} more")
    return "\n".join(lines)


def raise_problems(problems: list[Problem], skip_bad: bool = False) -> None:
    """Raise one DataError listing `problems` (if there are any)."""
    if problems:
        raise DataError(format_problems(problems, skip_bad), problems)


def resolve_problems(problems: list[Problem], skip_bad: bool) -> list[tuple[int, str]]:
    """Raise one DataError for all problems, or (skip_bad) return (GalaxyID, reasons) for each bad galaxy.

    Args:
        problems: everything found while reading.
        skip_bad: leave out the bad galaxies instead of failing (file-level problems still fail).

    Returns:
        (GalaxyID, reason) for every galaxy to leave out, sorted by GalaxyID.
    """
    if not problems:
        return []
    if not skip_bad or any(p.galaxy_id is None for p in problems):
        raise_problems(problems, skip_bad)
    reasons: dict[int, list[str]] = {}
    for p in problems:
        reasons.setdefault(p.galaxy_id, []).append(p.reason())
    return [(gid, "; ".join(reasons[gid])) for gid in sorted(reasons)]
