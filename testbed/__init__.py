"""Real-world set-ups shared by the tests and the benchmarks: network namespaces, server processes.

Not installed (no mapping in pyproject.toml): it serves this repository's tests/ and
benchmarks/, which both import it, so that neither depends on the other.
"""
