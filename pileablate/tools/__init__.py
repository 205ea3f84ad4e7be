"""Tools for developers, run from a checkout of the repository (they use its tests/ and benchmarks/)."""
