"""Benchmarks of trainer-callbacks (``make bench`` = ``python -m bench``; results in docs/benchmarks.md).

One module per benchmark, each with ``run(quick: bool) -> BenchResult``; :mod:`bench.common`
holds the interleaved A/B harness. ``quick=True`` runs a toy size (the smoke test).
"""
