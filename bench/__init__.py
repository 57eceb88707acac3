"""Benchmarks: each compares Mutualis against the raw baseline measured in the same run."""
