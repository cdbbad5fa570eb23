#!/usr/bin/env bash
# The package as users install it: build the wheel, pip-install it (not editable) into a fresh venv, and from a
# folder outside the clone run `python -m galaxylib`, the public API, and one notebook with plain papermill.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
"$ROOT/.venv/bin/python" -m pip wheel -q --no-deps -w "$WORK/dist" .
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip
"$WORK/venv/bin/python" -m pip install -q "$WORK"/dist/galaxylib-*.whl
cd "$WORK"  # outside the clone: nothing may be found through the repository's paths
export GALAXYLIB_CACHE_DIR="$WORK/cache" MPLBACKEND=Agg
PY="$WORK/venv/bin/python"
"$PY" -m galaxylib --version
"$PY" -m galaxylib synth --n 60 --seed 1 --out "$WORK/data"
"$PY" -c "import galaxylib, galaxylib.reproduce as r; assert 'site-packages' in galaxylib.__file__, galaxylib.__file__; \
assert r.source_checkout() is None; print(len(list(r.notebook_folder().glob('*.ipynb'))), 'notebooks installed')"
"$PY" - <<PYEOF
from pathlib import Path
import galaxylib as gz
run = gz.train("baseline", Path("$WORK/data"), profile="smoke", out=Path("$WORK/run"), progress=False)
df = gz.predict(gz.load_run(Path("$WORK/run")), Path("$WORK/data"), tta=1, progress=False)
assert list(df.columns[:2]) == ["GalaxyID", "Class1.1"] and len(df.columns) == 38 and len(df) == 60, df.columns
print("API: trained, reloaded and predicted", len(df), "galaxies; val RMSE", round(run.metrics["val_rmse"], 4))
PYEOF
# papermill as its users run it: the clone's notebook, the installed package, the notebook's own kernelspec
"$WORK/venv/bin/papermill" "$ROOT/notebooks/01_baseline.ipynb" "$WORK/out.ipynb" -p profile smoke \
    -p data_dirs "$WORK/data" --log-level WARNING
test -f "$WORK/results/smoke/tables/01_baseline_scores.csv"  # ./results/<profile> of the current folder
# and reproduce from the installed package data; the paper's numbers are package data too
"$PY" -m galaxylib reproduce --profile smoke --data-dir "$WORK/data" --only 00_data_exploration > "$WORK/reproduce.log"
test -f "$WORK/results/smoke/notebooks/00_data_exploration.ipynb"
"$PY" -c "from galaxylib import report; assert len(report.load_paper_reference()) == 7"
echo "wheel check passed: $(ls "$WORK"/dist)"
