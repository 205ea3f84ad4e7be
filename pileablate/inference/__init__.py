"""Inference: sampling rules, the decoding loop (with or without a KV cache), speculative decoding."""
