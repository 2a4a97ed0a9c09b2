# internvla-ros: every entry point a user or CI needs. `make help` lists them.
SHELL := /bin/bash
IN_ENV := source scripts/env.sh &&

.PHONY: help setup test lint demo eval bench train-default clean

help:
	@echo "make setup  - create .venv, install pinned dependencies, build the workspace (idempotent)"
	@echo "make test   - run every package's tests (sets up first if needed)"
	@echo "make lint   - ruff over all Python sources"
	@echo "make demo   - simulated Franka + built-in model, one episode, results in demo_out/"
	@echo "make eval   - seeded simulated episodes, results in eval_out/eval.json"
	@echo "make bench  - CPU benchmark of the tiny model, results in bench_out/"
	@echo "make train-default - record expert data and train the built-in model (CPU, <= 60 min)"

setup:
	@bash scripts/setup.sh

test: setup
	@$(IN_ENV) scripts/test.sh $(PYTEST_ARGS)

lint: setup
	@$(IN_ENV) ruff check src scripts

demo: setup
	@$(IN_ENV) internvla demo $(DEMO_ARGS)

eval: setup
	@$(IN_ENV) internvla eval $(EVAL_ARGS)

bench: setup
	@$(IN_ENV) internvla-m1 bench $(BENCH_ARGS)

train-default: setup
	@$(IN_ENV) python -m internvla_bringup.default_model $(TRAIN_ARGS)

clean:
	rm -rf build install log demo_out eval_out bench_out
