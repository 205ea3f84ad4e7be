"""A tokenizer that kills the process it runs in when it meets a marker: a worker that dies mid-run."""

from __future__ import annotations

import os

from pileablate.data.tokenizer import BytesTokenizer

MARKER = "this document kills its worker"


class DyingTokenizer(BytesTokenizer):
    def encode_array(self, text: str):
        if MARKER in text:
            os._exit(3)  # as the kernel's out-of-memory killer would: no exception, no clean-up
        return super().encode_array(text)
