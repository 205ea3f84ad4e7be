"""How many passes over the train split a budget means: said before a run starts, refused beyond use.

Training windows are drawn at random offsets of the train split (data_loader), so a budget larger than
the split shows the model the same tokens again: a setting a person should choose, not an accident of a
default budget on a small store. A budget of more than MAX_PASSES passes is no setting at all (a typo
such as 1e99, or a unit mistaken): it is refused before anything is built. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pileablate.errors import UserError

# More passes than this over the train split is beyond any use (10^6 passes of the demo's 30M-token store
# would take a 2-core CPU centuries); such a budget is a mistake, refused in one line.
MAX_PASSES = 10**6


def budget_tokens(max_tokens: Optional[int], max_steps: Optional[int], tokens_per_step: int) -> Optional[int]:
    """The most tokens a run of this budget trains on (the first limit reached ends it); None when only
    a time limit bounds it."""
    limits = [int(max_tokens)] if max_tokens is not None else []
    if max_steps is not None:
        limits.append(int(max_steps) * int(tokens_per_step))
    return min(limits) if limits else None


def train_split_tokens(data_dir: Path) -> int:
    """Tokens in a prepared store's train split, from its manifest."""
    from pileablate.data.manifest import read_manifest

    return int(read_manifest(Path(data_dir))["splits"]["train"]["tokens"])


def format_passes(passes: float) -> str:
    return f"{passes:.2f}" if passes >= 0.01 else f"{passes:.1g}"


def check_passes(tokens: Optional[int], train_tokens: int) -> None:
    """A one-line error for a budget of more than MAX_PASSES passes over the train split."""
    if tokens is None or train_tokens <= 0 or tokens <= MAX_PASSES * train_tokens:
        return
    raise UserError(f"a budget of {tokens:.3g} tokens is {tokens / train_tokens:.3g} passes over the "
                    f"{train_tokens:,}-token train split, beyond any use (more than {MAX_PASSES:.0e}); give "
                    "--max-tokens or --max-steps a budget within reach, e.g. --max-tokens 20M")


def describe_passes(tokens: Optional[int], train_tokens: int) -> str:
    """'0.0067 passes over the train split (200,000 of 30,123,456 tokens)'; '' for a time budget."""
    if tokens is None or train_tokens <= 0:
        return ""
    return (f"{format_passes(tokens / train_tokens)} passes over the train split "
            f"({tokens:,} of {train_tokens:,} tokens)")


def repeat_warning(tokens: Optional[int], train_tokens: int, default_budget: bool) -> Optional[str]:
    """What to say when the budget shows the model its data more than once (None when it does not)."""
    if tokens is None or train_tokens <= 0 or tokens <= train_tokens:
        return None
    from pileablate.train.config import DEFAULT_TOKENS_PER_PARAM

    why = (f"the default budget ({DEFAULT_TOKENS_PER_PARAM} tokens per parameter) is more than this store holds: "
           "prepare more data, or give --max-tokens (one pass is "
           f"--max-tokens {train_tokens})" if default_budget else
           "the budget is larger than the store: every token is seen about "
           f"{tokens / train_tokens:.1f} times")
    return f"the budget is {format_passes(tokens / train_tokens)} passes over the train split; {why}"
