"""Sampling rules and speculative decoding's acceptance rule, on explicit tiny distributions."""

from __future__ import annotations

import pytest
import torch

from pileablate.errors import UserError
from pileablate.inference.sampling import SamplingConfig, probabilities, sample
from pileablate.inference.speculative import accept_drafts


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def chi_squared(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's statistic of observed `counts` against expected probabilities (cells with p > 0)."""
    n = counts.sum()
    expected = probs * n
    mask = probs > 0
    return float(((counts[mask] - expected[mask]) ** 2 / expected[mask]).sum())


# 99.9% quantiles of the chi-squared distribution, by degrees of freedom.
CHI2_999 = {2: 13.82, 3: 16.27, 8: 26.12, 26: 54.05}


def test_greedy_is_one_hot_at_the_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0, 1.9]])
    probs = probabilities(logits, SamplingConfig(temperature=0))
    assert probs.tolist() == [[0.0, 1.0, 0.0, 0.0]]


def test_temperature_scales_the_logits():
    logits = torch.tensor([0.5, 1.0, -2.0, 0.0])
    for t in (0.5, 1.0, 2.0):
        expected = torch.softmax(logits / t, dim=-1)
        torch.testing.assert_close(probabilities(logits, SamplingConfig(temperature=t)), expected)


def test_top_k_keeps_only_the_k_most_likely_tokens():
    logits = torch.tensor([3.0, 1.0, 2.0, 0.0, -1.0])
    probs = probabilities(logits, SamplingConfig(temperature=1.0, top_k=2))
    assert (probs > 0).tolist() == [True, False, True, False, False]
    torch.testing.assert_close(probs[[0, 2]], torch.softmax(torch.tensor([3.0, 2.0]), dim=-1))
    one = probabilities(logits, SamplingConfig(temperature=1.0, top_k=1))
    assert one.tolist() == probabilities(logits, SamplingConfig(temperature=0)).tolist()


@pytest.mark.parametrize(
    "top_p, kept",
    [(0.5, [0]), (0.51, [0, 1]), (0.8, [0, 1]), (0.81, [0, 1, 2]), (1.0, [0, 1, 2, 3])],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, kept):
    base = torch.tensor([0.5, 0.3, 0.15, 0.05])
    probs = probabilities(base.log(), SamplingConfig(temperature=1.0, top_p=top_p))
    assert torch.nonzero(probs).flatten().tolist() == kept
    torch.testing.assert_close(probs[kept], base[kept] / base[kept].sum())


def test_padding_ids_are_never_sampled():
    logits = torch.zeros(70)
    logits[65:] = 100.0  # the padded ids would win if not masked
    probs = probabilities(logits, SamplingConfig(temperature=1.0), vocab_size=65)
    assert probs[65:].sum() == 0
    assert probabilities(logits, SamplingConfig(temperature=0), vocab_size=65).argmax() < 65


def test_bad_sampling_options_are_user_errors():
    for kwargs in ({"temperature": -1.0}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": -3}):
        with pytest.raises(UserError):
            SamplingConfig(**kwargs)


def first_token_counts(p: torch.Tensor, q: torch.Tensor, trials: int, seed: int) -> torch.Tensor:
    """Counts of the first token emitted by one speculative round with drafts sampled from q."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.zeros(p.shape[-1])
    for _ in range(trials):
        drafts = sample(q, gen)
        accepted, token = accept_drafts(p, q, drafts, gen)
        counts[int(drafts[0]) if accepted else token] += 1
    return counts


@pytest.mark.parametrize("k", [1, 3])
def test_acceptance_rule_emits_the_target_distribution(k):
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(k + 1, 4) * 2, dim=-1)
    q = torch.softmax(torch.randn(k, 4) * 2, dim=-1)
    counts = first_token_counts(p, q, trials=6000, seed=1)
    assert chi_squared(counts, p[0]) < CHI2_999[3]
    # The test has power: the draft's own distribution is rejected by it.
    assert chi_squared(counts, q[0]) > 10 * CHI2_999[3]


def test_acceptance_rule_when_the_draft_misses_target_support():
    # The draft puts mass where the target has none and vice versa: only the residual can reach token 2.
    p = torch.tensor([[0.5, 0.0, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    q = torch.tensor([[0.5, 0.5, 0.0]])
    counts = first_token_counts(p, q, trials=4000, seed=2)
    assert counts[1] == 0
    assert chi_squared(counts, p[0]) < CHI2_999[2]


def test_all_accepted_gives_a_bonus_token_from_the_last_target_row():
    p = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    q = p[:2].clone()
    accepted, token = accept_drafts(p, q, torch.tensor([0, 1]))
    assert (accepted, token) == (2, 2)


def test_greedy_acceptance_stops_at_the_first_disagreement():
    target = torch.nn.functional.one_hot(torch.tensor([2, 0, 1, 3]), 4).float()
    draft = torch.nn.functional.one_hot(torch.tensor([2, 1, 1]), 4).float()
    accepted, token = accept_drafts(target, draft, torch.tensor([2, 1, 1]))
    assert (accepted, token) == (1, 0)

