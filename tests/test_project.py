"""The project's set-up files agree with each other: pyproject.toml, environment.yml, .ci/run, README."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env_pip_requirements() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    return [line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    pip_reqs = _env_pip_requirements()
    assert "-e .[dev]" in pip_reqs, "environment.yml must install the project itself through pip"
    assert sorted(r for r in pip_reqs if not r.startswith("-e")) == sorted(wanted)
    assert "python=3.11" in (ROOT / "environment.yml").read_text()
    assert project["requires-python"].startswith(">=3.11")


def test_torch_pins():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make reproduce" in readme
