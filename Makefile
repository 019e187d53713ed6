# `make train`, `make test` and `make docs` set themselves up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q -c constraints.txt

.PHONY: train test lint docs setup setup-test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-base: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-base
	$(PIP) -e ".[test,dev,atari,mujoco,ray,docs,video,export,serve,tune,multiagent]"
	touch $@

setup: $(VENV)/.installed-base
setup-test: $(VENV)/.installed-test

train: setup
	$(BIN)/rl train --algo ppo --env CartPole-v1

lint: setup-test
	$(BIN)/ruff check rl tests benchmarks examples

# The site from docs/ and the docstrings, into site/. Strict: a broken link, a missing
# page or API reference, or a docstring griffe cannot parse fails the build.
docs: setup-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: setup-test lint docs
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs site
