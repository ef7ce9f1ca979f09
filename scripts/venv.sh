#!/usr/bin/env bash
# Make ./.venv: a link to a virtualenv cached outside the clone, keyed by a hash of the
# dependency pins, so CI and fresh clones reuse one 7 GB environment instead of
# rebuilding it. The project itself is (re)installed editable on every call (seconds).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=${PYTHON:-python3}
key=$(cat requirements/torch.txt requirements/test.txt | sha256sum | cut -c1-16)
cache=${ARCHSPEC_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/archspec/venvs}
venv="$cache/$key"
if [ ! -f "$venv/.complete" ]; then
  echo "venv.sh: building the test environment in $venv (first time only, a few minutes)"
  rm -rf "$venv"
  mkdir -p "$cache"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  # torch first, alone: see requirements/torch.txt
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements/torch.txt
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements/torch.txt -r requirements/test.txt
  "$venv/bin/python" -m pip check
  touch "$venv/.complete"
fi
if [ -e .venv ] && [ ! -L .venv ]; then
  echo "venv.sh: ./.venv exists and is not a link made by this script; remove it first" >&2
  exit 1
fi
ln -sfn "$venv" .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
