# `make train` and `make test` set themselves up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q -c constraints.txt

.PHONY: train test lint setup setup-test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-base: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-base
	$(PIP) -e ".[test,dev,atari,ray]"
	touch $@

setup: $(VENV)/.installed-base
setup-test: $(VENV)/.installed-test

train: setup
	$(BIN)/rl train --algo ppo --env CartPole-v1

lint: setup-test
	$(BIN)/ruff check rl tests benchmarks

test: setup-test lint
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs
