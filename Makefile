# Shortcuts for the commands the README gives. Steps use one BLAS/OpenMP thread each (2-core laptops).
PYTHON ?= python
export OMP_NUM_THREADS ?= 1

.PHONY: test bench bench-quick

test:  ## the whole test suite, as in the README
	$(PYTHON) -m pytest -n 2 tests

bench:  ## every benchmark in bench/, one line per figure
	$(PYTHON) bench/run_all.py

bench-quick:  ## every benchmark at its quick size
	$(PYTHON) bench/run_all.py --quick
