# danas-bench: `make run` (the main job on the shipped tables) and `make test` on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast bench slurm-start slurm-stop clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# the CPU build of torch first: a plain `torch` requirement would pull a multi-GB CUDA build. On a
	# machine whose pip does not already resolve torch to the CPU build (this one does, through its
	# wheelhouse), run `make install TORCH_INDEX=https://download.pytorch.org/whl/cpu`
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/danas-bench leaderboard

test: $(STAMP)
	bash slurm/cluster.sh install
	bash slurm/cluster.sh start
	# the SLURM tests run verbosely (CI output names each one) and may not skip: a cluster that did
	# not come up fails them (DANAS_REQUIRE_SLURM=1)
	$(BIN)/python -m pytest -q -m "not slurm"; rc=$$?; \
	DANAS_REQUIRE_SLURM=1 $(BIN)/python -m pytest -v -m slurm || rc=1; \
	bash slurm/cluster.sh stop; exit $$rc

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slurm and not slow"

bench: $(STAMP)
	$(BIN)/python -m danas_bench.throughput

slurm-start:
	bash slurm/cluster.sh install && bash slurm/cluster.sh start

slurm-stop:
	bash slurm/cluster.sh stop

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis .benchmarks
