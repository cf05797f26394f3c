"""Benchmarks: the pure core, the read model's writes, a bare Faust agent, the report.

How they are run and read: docs/performance.md.
"""
