"""Model: one GPT whose parts are switched by named modifications (see registry.py)."""
