"""Ablations: the grid of configurations × seeds (plan.py), driven one run after another with an
equal budget (runner.py), reported at the end (ablation.py)."""
