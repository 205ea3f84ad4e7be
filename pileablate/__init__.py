"""pileablate: which modern Transformer modifications actually help, on real data, under an equal budget."""

__version__ = "0.1.0"
