"""The decoding loop: plain autoregressive decoding or speculative decoding, with or without a KV cache.

Context longer than the model's `seq_len`: the model has positions 0..seq_len-1 only (learned
position embeddings end there, and rotary models were never trained further). When the next forward
would need more, the window jumps: the oldest tokens are dropped so that only the most recent
`seq_len // 2` remain, the cache is rebuilt from them and decoding continues. A jump every seq_len/2
tokens keeps the cache's advantage (a token-by-token sliding window would rebuild the cache at every
step). The cached, uncached and speculative paths apply the same rule at the same tokens, so they see
identical contexts and greedy decoding gives identical tokens on all three.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch

from pileablate.errors import UserError
from pileablate.inference.sampling import SamplingConfig, probabilities, sample
from pileablate.inference.speculative import accept_drafts


@dataclass
class DecodeStats:
    """What a decode did, for the stderr summary and the benchmark."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    elapsed_s: float = 0.0
    forward_passes: int = 0
    target_forward_passes: int = 0
    drafted: int = 0
    accepted: int = 0
    window_shifts: int = 0
    cache_bytes: int = 0
    cache_bytes_per_token: float = 0.0
    stopped_at_eot: bool = False

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def acceptance_rate(self) -> Optional[float]:
        """Accepted / proposed draft tokens (None without a draft)."""
        return self.accepted / self.drafted if self.drafted else None


def model_seq_len(model: torch.nn.Module) -> int:
    return int(model.config.seq_len)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class ModelContext:
    """One model's view of the token stream: where its window starts, and its KV cache.

    Invariant: the cache (when used) holds the keys/values of tokens[start : start + cache.length],
    and cache.length < len(tokens) - start, so every forward has at least one new token to feed.
    """

    def __init__(self, model: torch.nn.Module, use_cache: bool, stats: DecodeStats, is_target: bool = True) -> None:
        self.model = model
        self.is_target = is_target
        self.seq_len = model_seq_len(model)
        self.keep = max(1, self.seq_len // 2)
        self.device = model_device(model)
        self.stats = stats
        self.start = 0
        self.cache = model.new_kv_cache(1, self.seq_len, device=self.device) if use_cache else None

    def begin(self, num_tokens: int) -> None:
        """Start on a prompt of `num_tokens`: its most recent seq_len tokens fit."""
        self.start = max(0, num_tokens - self.seq_len)
        if self.cache is not None:
            self.cache.truncate(0)

    def make_room(self, num_tokens: int, extra: int) -> None:
        """Ensure the context plus `extra` more tokens fits seq_len, jumping the window if not."""
        if num_tokens - self.start + extra > self.seq_len:
            self.start = num_tokens - self.keep
            if self.is_target:
                self.stats.window_shifts += 1
            if self.cache is not None:
                self.cache.truncate(0)

    def room(self, num_tokens: int) -> int:
        """How many tokens can follow tokens[:num_tokens] before the window must jump."""
        return self.seq_len - (num_tokens - self.start)

    def logits(self, tokens: Sequence[int], extra: Sequence[int] = (), rows: Optional[int] = None) -> torch.Tensor:
        """Next-token logits after tokens[-1] and after each of `extra`: (len(extra) + 1, V).

        `rows` asks for only the last few of those rows (the draft wants just the newest).
        """
        extra = list(extra)
        rows = len(extra) + 1 if rows is None else rows
        if len(tokens) + len(extra) - self.start > self.seq_len:
            raise AssertionError("context exceeds seq_len: make_room() was not called")
        offset = self.start + (self.cache.length if self.cache is not None else 0)
        feed = list(tokens[offset:]) + extra if offset <= len(tokens) else extra[offset - len(tokens) :]
        if len(feed) < rows:
            raise AssertionError(f"asked for {rows} rows of logits but only {len(feed)} tokens are new")
        idx = torch.tensor([feed], dtype=torch.long, device=self.device)
        out = self.model(idx, kv_cache=self.cache) if self.cache is not None else self.model(idx)
        self.stats.forward_passes += 1
        if self.is_target:
            self.stats.target_forward_passes += 1
        return out.logits[0, -rows:]

    def rollback(self, num_tokens: int) -> None:
        """Forget cached entries past the valid prefix once the stream holds `num_tokens` tokens."""
        if self.cache is not None:
            valid = num_tokens - self.start - 1
            if self.cache.length > valid:
                self.cache.truncate(valid)

    def nbytes(self) -> int:
        """Bytes the cache holds (allocated for seq_len tokens)."""
        return self.cache.nbytes() if self.cache is not None else 0


@torch.inference_mode()
def decode(
    model: torch.nn.Module,
    prompt: Sequence[int],
    max_new_tokens: int,
    sampling: SamplingConfig,
    *,
    vocab_size: Optional[int] = None,
    stop_ids: Sequence[int] = (),
    use_cache: bool = True,
    draft: Optional[torch.nn.Module] = None,
    draft_tokens: int = 4,
    generator: Optional[torch.Generator] = None,
    stats: Optional[DecodeStats] = None,
) -> Iterator[int]:
    """Yield up to `max_new_tokens` new token ids after `prompt`, one at a time as they are decided.

    With `draft`, decoding is speculative: the draft proposes `draft_tokens` tokens per round and
    the target verifies them in one forward pass; the emitted tokens have the target's distribution.
    Decoding stops early after (without yielding) a token in `stop_ids`. `stats` is filled in as
    decoding proceeds.
    """
    if not prompt:
        raise UserError("the prompt is empty; give --prompt TEXT (or text on stdin)")
    if max_new_tokens < 0:
        raise UserError(f"--max-new-tokens must be >= 0, got {max_new_tokens}")
    stats = stats if stats is not None else DecodeStats()
    stats.prompt_tokens = len(prompt)
    stop = set(stop_ids)
    tokens = list(prompt)
    models = [model] + ([draft] if draft is not None else [])
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    start_time = time.perf_counter()
    try:
        target = ModelContext(model, use_cache, stats)
        target.begin(len(tokens))
        stats.cache_bytes = target.nbytes()
        stats.cache_bytes_per_token = stats.cache_bytes / target.seq_len
        if draft is None:
            steps = _plain(target, tokens, max_new_tokens, sampling, vocab_size, generator, stats)
        else:
            helper = ModelContext(draft, use_cache, stats, is_target=False)
            if draft_tokens < 1:
                raise UserError(f"--draft-tokens must be >= 1, got {draft_tokens}")
            if draft_tokens > helper.keep:
                raise UserError(
                    f"--draft-tokens {draft_tokens} is too many for the draft's context of "
                    f"{helper.seq_len} tokens; use at most {helper.keep}"
                )
            helper.begin(len(tokens))
            steps = _speculative(
                target, helper, tokens, max_new_tokens, sampling, vocab_size, draft_tokens, generator, stats
            )
        for token in steps:
            if token in stop:
                stats.stopped_at_eot = True
                break
            stats.new_tokens += 1
            stats.elapsed_s = time.perf_counter() - start_time
            yield token
    finally:
        stats.elapsed_s = time.perf_counter() - start_time
        for m, mode in zip(models, modes):
            m.train(mode)


def _plain(
    target: ModelContext,
    tokens: list[int],
    max_new_tokens: int,
    sampling: SamplingConfig,
    vocab_size: Optional[int],
    generator: Optional[torch.Generator],
    stats: DecodeStats,
) -> Iterator[int]:
    for _ in range(max_new_tokens):
        target.make_room(len(tokens), 0)
        probs = probabilities(target.logits(tokens)[-1], sampling, vocab_size)
        token = int(sample(probs, generator))
        tokens.append(token)
        yield token


def _speculative(
    target: ModelContext,
    helper: ModelContext,
    tokens: list[int],
    max_new_tokens: int,
    sampling: SamplingConfig,
    vocab_size: Optional[int],
    draft_tokens: int,
    generator: Optional[torch.Generator],
    stats: DecodeStats,
) -> Iterator[int]:
    emitted = 0
    while emitted < max_new_tokens:
        target.make_room(len(tokens), 0)
        # Drafts must not cross a window jump of the target (so the target sees exactly the contexts
        # plain decoding would) nor run past the tokens still wanted (a round emits accepted + 1).
        k = min(draft_tokens, target.room(len(tokens)), max_new_tokens - emitted - 1)
        proposed: list[int] = []
        draft_probs = []
        if k > 0:
            helper.make_room(len(tokens), k - 1)
            for _ in range(k):
                q = probabilities(helper.logits(tokens, proposed, rows=1)[0], sampling, vocab_size)
                proposed.append(int(sample(q, generator)))
                draft_probs.append(q)
        p = probabilities(target.logits(tokens, proposed), sampling, vocab_size)
        q_all = torch.stack(draft_probs) if draft_probs else p[:0]
        drafts = torch.tensor(proposed, dtype=torch.long, device=p.device)
        accepted, next_token = accept_drafts(p, q_all, drafts, generator)
        stats.drafted += k
        stats.accepted += accepted
        new = proposed[:accepted] + [next_token]
        tokens.extend(new)
        target.rollback(len(tokens))
        helper.rollback(len(tokens))
        for token in new:
            emitted += 1
            yield token


class TextStream:
    """Turns a growing list of token ids into text pieces that are safe to print.

    One UTF-8 character can be split over several tokens (byte-level BPE, the `bytes` tokenizer), and
    decoding such a fragment alone gives U+FFFD. Only the last character of a decode can still be
    incomplete, so everything before a trailing U+FFFD is final and is emitted; the rest waits for the
    next token. Decoding restarts from the last point where the text ended cleanly, so the pieces
    joined equal the decode of all the tokens, invalid bytes included.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.pending: list[int] = []  # tokens since the text last ended on a complete character
        self.emitted = ""  # what of their text has been emitted

    def push(self, token: int) -> str:
        self.pending.append(token)
        text = self.tokenizer.decode(self.pending)
        complete = not text.endswith("\ufffd")
        final = text if complete else text[:-1]
        piece = final[len(self.emitted) :]
        if complete:
            self.pending, self.emitted = [], ""
        else:
            self.emitted = final
        return piece

    def flush(self) -> str:
        text = self.tokenizer.decode(self.pending) if self.pending else ""
        piece = text[len(self.emitted) :]
        self.pending, self.emitted = [], ""
        return piece
