"""The decoding loop on tiny explicit models: windowing, cache bookkeeping, speculative decoding.

`PositionalMarkov` is a language model whose next-token distribution is an explicit table indexed by
(position in the window, current token). Its fake cache only counts tokens, so any slip in the loop's
bookkeeping (wrong position, token fed twice or skipped, missed rollback) changes its output.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pileablate.errors import UserError
from pileablate.inference.decode import DecodeStats, TextStream, decode
from pileablate.inference.sampling import SamplingConfig

from test_generate_sampling import CHI2_999, chi_squared

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CountingCache:
    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.length = 0

    def truncate(self, n: int) -> None:
        assert 0 <= n <= self.length
        self.length = n

    def nbytes(self) -> int:
        return self.length * 8


class PositionalMarkov(torch.nn.Module):
    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table.log_softmax(-1))  # (seq_len, V, V)
        self.config = SimpleNamespace(seq_len=table.shape[0])
        self.fed: list[int] = []

    def new_kv_cache(self, batch_size, max_len, device=None, dtype=None):
        return CountingCache(max_len)

    def forward(self, idx, targets=None, kv_cache=None):
        start = kv_cache.length if kv_cache is not None else 0
        pos = torch.arange(start, start + idx.shape[1])
        assert int(pos[-1]) < self.config.seq_len, "position past seq_len"
        if kv_cache is not None:
            kv_cache.length += idx.shape[1]
        self.fed.append(idx.shape[1])
        return SimpleNamespace(logits=self.table[pos, idx])


def markov(seed: int, seq_len: int = 12, vocab: int = 5, sharpness: float = 2.0) -> PositionalMarkov:
    gen = torch.Generator().manual_seed(seed)
    return PositionalMarkov(torch.randn(seq_len, vocab, vocab, generator=gen) * sharpness)


def run(model, prompt, n, **kw) -> list[int]:
    kw.setdefault("sampling", SamplingConfig(temperature=0))
    return list(decode(model, prompt, n, **kw))


def test_cached_and_uncached_greedy_agree_across_window_jumps():
    model = markov(0, seq_len=8)
    stats = DecodeStats()
    cached = run(model, [1, 2, 3], 30, use_cache=True, stats=stats)
    uncached = run(model, [1, 2, 3], 30, use_cache=False)
    assert cached == uncached and len(cached) == 30
    assert stats.window_shifts >= 5
    # With a cache, every step after the prefill feeds one token except right after a jump.
    assert model.fed.count(1) >= 20


def test_cached_and_uncached_sampling_agree_given_the_seed():
    model = markov(1)
    sampling = SamplingConfig(temperature=1.0, top_k=4, top_p=0.9)
    a = run(model, [0], 25, sampling=sampling, generator=torch.Generator().manual_seed(7))
    b = run(model, [0], 25, sampling=sampling, use_cache=False, generator=torch.Generator().manual_seed(7))
    assert a == b


def test_a_prompt_longer_than_the_context_keeps_its_most_recent_tokens():
    model = markov(2, seq_len=8)
    long_prompt = [4, 4, 4, 1, 2, 3, 0, 1, 2, 3, 4, 0]
    assert run(model, long_prompt, 6) == run(model, long_prompt[-8:], 6)


@pytest.mark.parametrize("k", [1, 3, 4])
@pytest.mark.parametrize("use_cache", [True, False])
def test_speculative_greedy_equals_the_targets_own_greedy(k, use_cache):
    target, draft = markov(3, seq_len=10), markov(4, seq_len=8)
    plain = run(target, [1, 2], 40, use_cache=use_cache)
    stats = DecodeStats()
    spec = run(target, [1, 2], 40, draft=draft, draft_tokens=k, use_cache=use_cache, stats=stats)
    assert spec == plain
    assert stats.drafted > 0 and stats.accepted < stats.drafted  # the draft really disagrees sometimes


def test_a_perfect_draft_is_always_accepted():
    target = markov(5, seq_len=16)
    stats = DecodeStats()
    out = run(target, [0], 12, draft=markov(5, seq_len=16), draft_tokens=3, stats=stats)
    assert out == run(target, [0], 12)
    assert stats.acceptance_rate == 1.0
    assert stats.target_forward_passes == 3  # 4 tokens per target pass: 3 drafts + the bonus


def test_speculative_sampling_has_the_targets_joint_distribution():
    # Three tokens after the prompt, 27 possible sequences: their frequencies under speculative
    # decoding must match the target's exact joint probabilities.
    vocab = 3
    target, draft = markov(6, seq_len=6, vocab=vocab, sharpness=1.5), markov(7, seq_len=6, vocab=vocab, sharpness=1.5)
    probs = target.table.detach().softmax(-1)
    exact = torch.zeros(vocab, vocab, vocab)
    for a in range(vocab):
        for b in range(vocab):
            for c in range(vocab):
                exact[a, b, c] = probs[0, 0, a] * probs[1, a, b] * probs[2, b, c]
    sampling = SamplingConfig(temperature=1.0)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(vocab, vocab, vocab)
    stats = DecodeStats()
    for _ in range(3000):
        a, b, c = decode(target, [0], 3, sampling, draft=draft, draft_tokens=2, generator=gen, stats=stats)
        counts[a, b, c] += 1
    assert chi_squared(counts.flatten(), exact.flatten()) < CHI2_999[26]
    # The draft is a different model, so this checks the rule, not a tautology.
    draft_probs = draft.table.detach().softmax(-1)
    assert not torch.allclose(draft_probs[:3], probs[:3], atol=0.1)


def test_decoding_stops_at_end_of_text_without_emitting_it():
    model = markov(8, seq_len=10)
    full = run(model, [0], 20)
    eot = full[5]
    stats = DecodeStats()
    cut = run(model, [0], 20, stop_ids=[eot], stats=stats)
    assert cut == full[: full.index(eot)]
    assert stats.stopped_at_eot


def test_too_many_draft_tokens_for_the_drafts_context_is_a_user_error():
    with pytest.raises(UserError, match="draft-tokens"):
        run(markov(0, seq_len=8), [1], 5, draft=markov(1, seq_len=8), draft_tokens=5)


def test_empty_prompt_is_a_user_error():
    with pytest.raises(UserError, match="prompt"):
        run(markov(0), [], 5)


class ChunkTokenizer:
    """Each token id stands for a chunk of bytes (like byte-level BPE); decode replaces bad UTF-8."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def decode(self, ids):
        return b"".join(self.chunks[i] for i in ids).decode("utf-8", errors="replace")


def stream_pieces(data: bytes, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(set(cuts)), len(data)]
    chunks = [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
    stream = TextStream(ChunkTokenizer(chunks))
    return [stream.push(i) for i in range(len(chunks))] + [stream.flush()]


def test_text_stream_never_splits_a_multibyte_character():
    text = "naïve café — 東京 🙂!"
    data = text.encode("utf-8")
    for cuts in ([], list(range(1, len(data))), [2, 3, 9, 14, 20, 21, 22]):
        pieces = stream_pieces(data, cuts)
        assert "".join(pieces) == text
        assert all("\ufffd" not in p for p in pieces)


def test_text_stream_pieces_join_to_the_full_decode_even_for_invalid_bytes():
    import random

    pool = list("aé東🙂".encode()) + [0xFF, 0x80, 0xC3, 0xE6, 0xF0, 0x9D]
    for seed in range(500):
        rng = random.Random(seed)
        data = bytes(rng.choice(pool) for _ in range(rng.randint(1, 16)))
        cuts = [rng.randint(1, len(data)) for _ in range(rng.randint(0, len(data)))]
        assert "".join(stream_pieces(data, cuts)) == data.decode("utf-8", errors="replace")
