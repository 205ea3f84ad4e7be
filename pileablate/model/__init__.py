"""Model: one GPT assembled from the components the registry (pileablate/registry.py) names by slot."""
