"""Builders of small real inputs for tests and benchmarks (not part of the package).

`helpers.bpe`: learn a byte-level BPE offline and write it as a `.tiktoken` file.
`helpers.stores`: a small real token store. Benchmarks import these with `tests/` on sys.path.
"""
