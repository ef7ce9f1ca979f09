# Two entry points (see README): `make demo` runs the main job on the built-in zoo,
# `make test` runs everything CI runs. Both create .venv first (scripts/venv.sh).
PY := .venv/bin/python
ARCHSPEC := .venv/bin/archspec

.PHONY: venv demo test lint gen check bench

venv:
	@bash scripts/venv.sh

demo: venv
	$(ARCHSPEC) list
	$(ARCHSPEC) summary resnet50 | tail -n 4
	$(ARCHSPEC) gen --all

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

check: venv
	$(ARCHSPEC) gen --all --check

test: venv lint check
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup

gen: venv
	$(ARCHSPEC) gen --all

bench: venv
	$(PY) benchmarks/torch_vs_reference.py
