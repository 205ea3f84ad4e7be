"""Data: sources -> documents -> tokens -> memory-mapped Arrow token store."""
