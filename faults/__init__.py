"""`make faults` / `python -m faults --out faults/out`: the fault scenarios of issue 9 against real service
subprocesses on a small freshly trained repository (cached), one table of results. Not part of `make test`."""
