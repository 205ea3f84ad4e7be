"""`ablate --seeds auto`: which configurations get more seeds after a round, given the verdicts.

Round 1 trains the first look's seeds (3) of every configuration and its baseline. After each round the
report's verdicts are read; a configuration still "undecided" gets seeds up to the next look of the
sequential design (`report.verdict.SequentialDesign.looks()`: 3, 5, 7, 9, 10), a decided one keeps its
seeds, and each point's baseline trains every seed one of its configurations has (the comparisons are
paired by seed). The study stops when no count changes: nothing undecided, or the last look reached.
The report derives each configuration's look from its paired seeds, so `pileablate report` gives
exactly the verdicts the study acted on.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

UNDECIDED = "undecided"


def first_counts(groups: Sequence[tuple[Optional[str], Sequence[str]]], looks: Sequence[int]) -> dict[str, int]:
    """Every configuration (and baseline) of every group at the first look."""
    keys = [key for baseline, others in groups for key in ([baseline] if baseline else []) + list(others)]
    return {key: looks[0] for key in keys}


def next_counts(counts: Mapping[str, int], words: Mapping[str, str], looks: Sequence[int],
                groups: Sequence[tuple[Optional[str], Sequence[str]]]) -> dict[str, int]:
    """The seed counts of the next round. `groups`: per point, (its baseline's key or None, the keys of
    its other configurations); `words`: the verdict word of each configuration (missing: no verdict)."""
    new = dict(counts)
    for baseline, others in groups:
        for key in others:
            later = [n for n in looks if n > counts[key]]
            if words.get(key) == UNDECIDED and later:
                new[key] = later[0]
        if baseline is not None:
            new[baseline] = max([counts[baseline], *(new[key] for key in others)])
    return new


def describe_round(number: int, counts: Mapping[str, int], previous: Optional[Mapping[str, int]]) -> str:
    """'round 2: seeds 5 for cosine, all, baseline' (what this round adds)."""
    if previous is None:
        return f"round 1: {min(counts.values())} seeds of every configuration" if counts else "round 1"
    grown: dict[int, list[str]] = {}
    for key, n in counts.items():
        if n != previous.get(key):
            grown.setdefault(n, []).append(key)
    return f"round {number}: " + "; ".join(f"{n} seeds for {', '.join(keys)}" for n, keys in sorted(grown.items()))


def describe_words(words: Mapping[str, str]) -> str:
    """'rope helps, cosine undecided, swiglu no effect' (the verdicts a round ended with)."""
    return ", ".join(f"{key} {word}" for key, word in words.items()) or "no verdict (no baseline)"
