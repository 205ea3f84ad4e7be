"""Learn a byte-level BPE vocabulary offline and write it as a `.tiktoken` ranks file.

For machines that cannot download tiktoken's encodings (tests, benchmarks, air-gapped clusters):
the result is a real BPE that `tiktoken.Encoding` runs, not a stand-in. The algorithm is the one of
Sennrich et al. 2016 / GPT-2 (Radford et al. 2019): split text with the GPT-2 pattern, start from the
256 bytes, and repeatedly merge the most frequent adjacent pair. Pair counts are updated
incrementally (only the words that contain the merged pair are touched) and the most frequent pair
is kept in a heap, so thousands of merges over a few MB of text take seconds.
"""

from __future__ import annotations

import base64
import heapq
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

from pileablate.data.tokenizer import GPT2_PAT_STR


def _pieces(texts: Iterable[str]) -> Counter:
    import regex  # tiktoken depends on it; the GPT-2 pattern needs \p{L} and possessive quantifiers

    pattern = regex.compile(GPT2_PAT_STR)
    counts: Counter = Counter()
    for text in texts:
        counts.update(pattern.findall(text))
    return counts


def learn_bpe(texts: Iterable[str], vocab_size: int) -> dict[bytes, int]:
    """Ranks for a byte-level BPE of at most `vocab_size` tokens (256 bytes + merges), by frequency."""
    ranks: dict[bytes, int] = {bytes([b]): b for b in range(256)}
    words: list[list[bytes]] = []
    freqs: list[int] = []
    for piece, count in _pieces(texts).items():
        encoded = piece.encode("utf-8", errors="ignore")
        if len(encoded) > 1:
            words.append([bytes([b]) for b in encoded])
            freqs.append(count)

    pair_counts: Counter = Counter()
    where: dict[tuple[bytes, bytes], set[int]] = defaultdict(set)
    for w, (symbols, f) in enumerate(zip(words, freqs)):
        for pair in zip(symbols, symbols[1:]):
            pair_counts[pair] += f
            where[pair].add(w)

    # Max-heap of (count, pair) with lazy deletion: an entry is valid while its count is current.
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    while len(ranks) < vocab_size and heap:
        negative, best = heapq.heappop(heap)
        count = pair_counts.get(best, 0)
        if count != -negative:
            continue  # stale entry
        if count < 2:
            break
        merged = best[0] + best[1]
        if merged not in ranks:
            ranks[merged] = len(ranks)
        touched: set = set()
        for w in list(where.pop(best, ())):
            symbols, f = words[w], freqs[w]
            for pair in zip(symbols, symbols[1:]):
                pair_counts[pair] -= f
                touched.add(pair)
            new: list[bytes] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == best[0] and symbols[i + 1] == best[1]:
                    new.append(merged)
                    i += 2
                else:
                    new.append(symbols[i])
                    i += 1
            words[w] = new
            for pair in zip(new, new[1:]):
                pair_counts[pair] += f
                where[pair].add(w)
                touched.add(pair)
        pair_counts.pop(best, None)
        touched.discard(best)
        for pair in touched:
            count = pair_counts.get(pair, 0)
            if count > 0:
                heapq.heappush(heap, (-count, pair))
            else:
                pair_counts.pop(pair, None)
    return ranks


def write_tiktoken_file(ranks: dict[bytes, int], path: Path) -> Path:
    """Write ranks in tiktoken's format: `base64(token) rank`, one per line, in rank order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [base64.b64encode(token) + b" " + str(rank).encode() for token, rank in sorted(ranks.items(), key=lambda kv: kv[1])]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def read_tiktoken_file(path: Path) -> dict[bytes, int]:
    """The ranks a `.tiktoken` file holds (the inverse of `write_tiktoken_file`)."""
    pairs = (line.split() for line in Path(path).read_bytes().splitlines() if line.strip())
    return {base64.b64decode(token): int(rank) for token, rank in pairs}
