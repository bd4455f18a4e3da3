# State Space Models, from HiPPO to Mamba-2: build, test, explore.
#
#   make book    build the book into _build/html (executes every notebook)
#   make test    build the book if it is out of date, then run the whole test suite
#   make lab     JupyterLab in notebooks/
#   make bench   on a GPU machine: GPU tests, every benchmark suite and training run -> book/results/
#   make clean   remove the build (make distclean: also .venv and _vendor)
#
# Everything runs in .venv (created here with $(PYTHON) -m venv), installed from
# pyproject.toml with the pins in constraints.txt.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HTML := _build/html
# stamps: each step re-runs only when its inputs change
INSTALLED := $(VENV)/.installed-book-test
INSTALLED_LAB := $(VENV)/.installed-lab
VENDORED := _vendor/.fetched
BUILT := _build/.book-built

# Everything the rendered book depends on (the notebooks import ssmlib and read book/results).
BOOK_SOURCES := _config.yml _toc.yml $(shell find book notebooks ssmlib tools -type f \
    -not -path '*/__pycache__/*' -not -path '*/.ipynb_checkpoints/*' 2>/dev/null)

.PHONY: book test lab bench clean distclean

book: $(BUILT)
	$(PY) tools/check_offline.py $(HTML)
	@echo "The book is built: open $(CURDIR)/$(HTML)/index.html"

test: $(BUILT)
	$(PY) -m pytest

# Extra arguments for jupyter lab, e.g. make lab LAB_ARGS="--no-browser --port 8890".
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(INSTALLED_LAB)
	cd notebooks && ../$(VENV)/bin/jupyter lab $(LAB_ARGS)

# Needs a CUDA GPU: tools/gpu_check.sh writes the JSON straight into book/results/.
bench: $(INSTALLED)
	PATH=$(abspath $(VENV))/bin:$$PATH OUT=book/results bash tools/gpu_check.sh

$(PY):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q -c constraints.txt -e ".[book,test]"
	touch $@

$(INSTALLED_LAB): $(INSTALLED)
	$(PY) -m pip install -q -c constraints.txt -e ".[book,test,lab]"
	touch $@

$(VENDORED): tools/fetch_vendor.sh
	tools/fetch_vendor.sh

# A full build (--all): Sphinx alone would not notice that ssmlib or book/results
# changed, and would not re-execute the notebooks. The stamp is written only when
# the build passes, so a failed build is retried next time. (`make book` then checks
# that nothing loads from the network; `make test` checks it in tests/test_book.py.)
$(BUILT): $(INSTALLED) $(VENDORED) $(BOOK_SOURCES)
	rm -f $@
	SSMBOOK_BUILD=1 $(VENV)/bin/jupyter-book build . --all -W -n --keep-going
	touch $@

clean:
	rm -rf _build .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) _vendor
