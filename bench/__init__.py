"""Benchmarks: `python -m bench [--quick]` runs them all and prints the figures."""
