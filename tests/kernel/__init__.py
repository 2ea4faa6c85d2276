"""Kernel tests: real rules in throw-away network namespaces (see lab.py)."""
