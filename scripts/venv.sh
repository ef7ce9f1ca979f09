#!/usr/bin/env bash
# Make ./.venv for this clone, cheaply.
#
# The heavy dependencies (torch, torchvision, tensorflow, onnxruntime: ~7 GB) live in ONE
# virtualenv cached outside the clone, keyed by a hash of requirements/*.txt, built once.
# ./.venv itself is a small per-clone venv that sees the cached one's packages through a
# .pth file and holds only this clone's editable install, so several clones (CI runs,
# worktrees) share the dependencies without pointing each other's imports elsewhere.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=${PYTHON:-python3}
key=$(cat requirements/torch.txt requirements/test.txt | sha256sum | cut -c1-16)
cache=${ARCHSPEC_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/archspec/venvs}
deps="$cache/$key"
pipq() { "$@" --quiet --disable-pip-version-check 2> >(grep -v "is ignored: it is neither" >&2); }

if [ ! -f "$deps/.complete" ]; then
  echo "venv.sh: building the shared dependency environment in $deps (first time only)"
  rm -rf "$deps"
  mkdir -p "$cache"
  "$py" -m venv "$deps"
  pipq "$deps/bin/python" -m pip install --upgrade pip
  # torch first and alone, from the exact pins (see requirements/torch.txt)
  pipq "$deps/bin/python" -m pip install -r requirements/torch.txt
  pipq "$deps/bin/python" -m pip install -r requirements/torch.txt -r requirements/test.txt
  "$deps/bin/python" -m pip check
  touch "$deps/.complete"
fi

if [ -L .venv ]; then rm .venv; fi  # older layout: a link to the shared environment
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.deps 2>/dev/null)" != "$deps" ]; then
  rm -rf .venv
  "$deps/bin/python" -m venv --without-pip .venv
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  deps_site=$("$deps/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "import site; site.addsitedir('$deps_site')" > "$site/_archspec_shared_deps.pth"
  ln -s "$deps/bin/ruff" .venv/bin/ruff  # a standalone binary
  echo "$deps" > .venv/.deps
fi
pipq .venv/bin/python -m pip install --no-deps --no-build-isolation -e . 2>/dev/null \
  || .venv/bin/python -m pip install --no-deps --no-build-isolation -e .
