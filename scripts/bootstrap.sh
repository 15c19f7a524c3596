#!/usr/bin/env bash
# Create the virtualenv and install the project with pinned versions (requirements/constraints.txt).
# Called by make when pyproject.toml or the constraints change; safe to run again.
set -euo pipefail
venv=${1:-.venv}
python=${BOOTSTRAP_PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
  echo "[bootstrap] creating virtualenv $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
echo "[bootstrap] installing servinglab and its pinned dependencies"
"$venv/bin/python" -m pip install --quiet -c requirements/constraints.txt -e '.[train,lab,dev]'
# The notebook tests run a Jupyter kernel; register the venv's own Python as `python3` so they do
# not pick up whatever other interpreter the machine has.
"$venv/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "[bootstrap] done"
