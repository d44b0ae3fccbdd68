"""Benchmarks (not tests): each prints a table and can write JSON (`--json`)."""
