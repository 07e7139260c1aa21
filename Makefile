# danas-bench: `make run` (the main job on the shipped tables) and `make test` on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run leaderboard-full leaderboard-docs leaderboard-v2-docs refresh-v2 lint test test-fast bench slurm-start slurm-stop clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# the CPU build of torch first: a plain `torch` requirement would pull a multi-GB CUDA build. On a
	# machine whose pip does not already resolve torch to the CPU build (this one does, through its
	# wheelhouse), run `make install TORCH_INDEX=https://download.pytorch.org/whl/cpu`
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# the quick leaderboard (20 matched runs, 30 queries, held-out seeds) -> results/
run: $(STAMP)
	$(BIN)/danas-bench leaderboard

# the larger leaderboard (40 runs, 100 queries, DaSS's full meta-training, TPE) -> results/full/;
# not yet timed (estimate: about 10x the quick run's CPU). `make leaderboard-docs` writes the shipped docs/
LEADERBOARD_FULL := runs=40 budget.queries=100 base_options=null 'scorings=[heldout_seeds,expected]' \
	'searchers=[random,random_none,evolution,evolution_kd,akd,autokd,trade,dass,dass_paper,optuna_tpe]'
leaderboard-full: $(STAMP)
	$(BIN)/danas-bench leaderboard $(LEADERBOARD_FULL) out=results/full/leaderboard.md figures=results/full/figures

leaderboard-docs: $(STAMP)
	$(BIN)/danas-bench leaderboard recipe_id=v1 'scorings=[heldout_seeds,expected]' out=docs/leaderboard.md \
		figures=docs/figures compare=null
	$(BIN)/python scripts/searchers_results.py docs/leaderboard.json docs/searchers.md

# the leaderboard on the v2 tables of every pair that has one (all nine: digits, mnist1d and fashion-mnist
# x three settings each, complete and served; mnist1d/mlp exists only in v1; the retired digits/mlp is left
# out, digits/vgg replaced it), every default searcher
leaderboard-v2-docs: $(STAMP)
	$(BIN)/danas-bench leaderboard recipe_id=v2 'scorings=[heldout_seeds,expected]' out=docs/leaderboard-v2.md \
		figures=docs/figures/v2 compare=null

# the v2 tables (complete since session 25: it acts only when shards are added): merge each pair's finished
# shards (a pair whose table already holds them is left as it is), refit the expected files that are stale
# (the others are kept), rewrite the datasheet, verify. Retired pairs (digits/mlp, mnist1d/resnet) stay: their
# tables are still read by name
V2_PAIRS := digits/none digits/resnet digits/mlp digits/vgg mnist1d/none mnist1d/resnet mnist1d/tcn mnist1d/resnet_ens \
	fashion-mnist/none fashion-mnist/resnet fashion-mnist/mlp
refresh-v2: $(STAMP)
	for p in $(V2_PAIRS); do $(BIN)/danas-bench merge pair=$$p recipe_version=v2 partial=true || exit 1; done
	OMP_NUM_THREADS=1 $(BIN)/danas-bench expected recipe_id=v2
	$(BIN)/danas-bench datasheet
	$(BIN)/danas-bench verify

# ruff: lint and format (pyproject's [tool.ruff], one line length); `ruff format .` fixes the format
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
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
	$(BIN)/python -m danas_bench.reports.throughput

slurm-start:
	bash slurm/cluster.sh install && bash slurm/cluster.sh start

slurm-stop:
	bash slurm/cluster.sh stop

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis .benchmarks
