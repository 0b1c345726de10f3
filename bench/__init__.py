"""durably's benchmark suite: ``python -m bench [--quick] [--only NAME] [--repeat N]``.

Every figure is measured in the same run as its references (the raw commit rate of
the same database with the same settings, and DBOS Transact running the same
workflows), in fresh child processes, repetitions interleaved. See ``docs/benchmarks.md``.

This package imports only the standard library at import time: the DBOS driver runs
in DBOS's own virtual environment and imports ``bench.protocol`` from here.
"""
