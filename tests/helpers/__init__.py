"""Builders of small real inputs for tests and benchmarks (not part of the package).

`helpers.bpe`: learn a byte-level BPE offline and write it as a `.tiktoken` file (and read one back).
`helpers.verdicts`: verdicts straight from per-seed differences, for simulated studies.
`helpers.stores`: a small real token store. Benchmarks import these with `tests/` on sys.path.
"""
