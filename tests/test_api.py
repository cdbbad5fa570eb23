"""The public API a scientist calls in one line: galaxylib.train / predict / load_run, Path objects everywhere."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import galaxylib as gz
from galaxylib import tree
from galaxylib.errors import UserError
from galaxylib.experiments import resolve


def test_the_api_is_functions_not_modules():
    from galaxylib import load_run, predict, train

    assert all(callable(f) and f.__module__ == "galaxylib.api" for f in (train, predict, load_run))
    import galaxylib.prediction  # noqa: F401  (importing the modules must not shadow the functions)
    import galaxylib.training  # noqa: F401

    assert gz.train.__module__ == "galaxylib.api" and gz.predict.__module__ == "galaxylib.api"
    assert "baseline" in gz.EXPERIMENTS and set(gz.PROFILES) == {"paper", "quick", "smoke"}
    assert gz.__version__.count(".") == 2
    with pytest.raises(AttributeError):
        gz.no_such_thing  # noqa: B018


def test_paths_are_accepted_and_stored_as_absolute_strings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one = resolve("baseline", "smoke", data_dirs=Path("data"), weights_file=None)
    several = resolve("baseline", "smoke", data_dirs=[Path("a"), "b"])
    assert one.data_dirs == [str(tmp_path / "data")] and several.data_dirs == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert one.to_dict()["data_dirs"] == [str(tmp_path / "data")]  # JSON-ready


def test_train_load_run_and_predict_in_one_line_each(synth_dir, tmp_path):
    run = gz.train("baseline", synth_dir, profile="smoke", out=tmp_path / "run", progress=False, tta=1)
    assert run.metrics["finished"] and run.path == tmp_path / "run"
    again = gz.load_run(tmp_path / "run")
    assert again.config == run.config and again.metrics == run.metrics
    images = sorted((synth_dir / "images_training_rev1").glob("*.jpg"))[:7]
    df = gz.predict(again, images, tta=1, progress=False)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == [tree.ID_COLUMN, *tree.COLUMNS]
    assert df[tree.ID_COLUMN].tolist() == sorted(int(p.stem) for p in images)
    values = df[list(tree.COLUMNS)].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    folder = gz.predict(str(tmp_path / "run"), synth_dir, tta=1, progress=False)  # a folder, a run path as str
    assert len(folder) == 80
    pd.testing.assert_frame_equal(folder.set_index(tree.ID_COLUMN).loc[df[tree.ID_COLUMN]].reset_index(), df)


def test_load_run_names_what_is_missing(tmp_path):
    with pytest.raises(UserError, match="not a run folder"):
        gz.load_run(tmp_path)
