"""Benchmarks (DESIGN §1): each prints its figures and writes them as JSON to bench/results/.

A package so that uvicorn can import the baseline app of `bench.api` by name.
"""
