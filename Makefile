# Conveniences around the two commands (scripts/demo.sh and scripts/test.sh).
PY := .venv/bin/python

.PHONY: install demo test unit e2e lint man clean

install:
	sh scripts/setup.sh

demo:
	sh scripts/demo.sh

test:
	sh scripts/test.sh

unit:
	$(PY) -m pytest -q tests/unit

e2e:
	$(PY) -m pytest -q tests/e2e

lint:
	.venv/bin/ruff check src tests bench
	.venv/bin/mypy

man: docs/pgod.8 docs/pgoctl.1

docs/%: docs/%.md
	go-md2man -in $< -out $@

clean:
	rm -rf .venv build dist src/*.egg-info docs/pgod.8 docs/pgoctl.1
