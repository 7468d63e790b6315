# k8s-netlabs: the two commands a newcomer needs are `docker compose up` and `make test`.
# Native Linux (as root): `make install` then `make test`.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: help system-deps install test test-fast lint labs bench test-docker class-image clean-labs

help:
	@echo "make system-deps  apt packages the labs need (Debian 12, as root)"
	@echo "make install      venv in $(VENV) with the project (k8snet, course, grader)"
	@echo "make test         the whole test suite (as root: it builds real namespaces)"
	@echo "make lint         ruff check + format check"
	@echo "make labs         regenerate labs/ (release) from solutions/ (source) with nbgrader"
	@echo "make bench        run every benchmark and print its ratios"
	@echo "make test-docker  build the image, start JupyterLab, smoke- and browser-test it"
	@echo "make class-image  the image for a class: no solutions/, no tests/, no answer keys"
	@echo "make clean-labs   remove every lab namespace left behind (k8snet down --all)"

system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		$$(grep -v '^#' system-packages.txt)

$(BIN)/k8snet: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/k8snet

# pytest exits 5 when it collected no test: that is not a failure of the suite itself.
# Two pytest workers (pytest-xdist), one test file per worker at a time: the labs' notebook
# round trips spend most of their time waiting on kernels and probes, so two of them overlap
# well on a 2-core machine. TEST_JOBS=0 runs everything in one process.
TEST_JOBS ?= 2

test: install
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile ; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

labs: install
	$(BIN)/python -m grader.nbtools release

bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

test-docker:
	bash docker/smoke.sh

# For a course that hands students the image (README, "For instructors"). Base image missing?
# docker/seed-base-image.sh first.
class-image:
	docker build --target class -t k8s-netlabs:class .

clean-labs: install
	$(BIN)/k8snet down --all
