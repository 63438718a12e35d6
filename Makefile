# Two commands on a fresh clone: `make demo` and `make test`. Both make .venv first.
PYTHON ?= python3
# The PyTorch to install. The default is a CPU build that our CI machines install from disk;
# e.g. `make test TORCH=torch==2.5.1` or a CUDA build's index for a GPU machine.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench lint clean

$(BIN)/lth: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/lth

demo: $(BIN)/lth
	$(BIN)/lth data fetch mnist
	$(BIN)/lth run lenet-mnist-quick --out runs

test: $(BIN)/lth
	$(BIN)/lth data fetch mnist
	$(BIN)/python -m pytest -q

# Plain PyTorch loop vs lth and lth's engines, side by side, every group (BENCH_ARGS="--quick"
# for shorter runs, "--only engines" for one group; the levels group trains whole levels):
# prints a table of ratios and writes benchmarks/results/latest.json. On a GPU:
# `make bench BENCH_ARGS="--device cuda"`.
bench: $(BIN)/lth
	$(BIN)/lth data fetch mnist
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

lint: $(BIN)/lth
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs build *.egg-info
