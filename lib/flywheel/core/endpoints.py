"""Clients for OpenAI-compatible chat-completions endpoints (NIM, vLLM, OpenAI, `flywheel serve`).

Used by the LLM judge (triage) and the endpoint router (evaluation): core, so stages share it.
"""

from __future__ import annotations

import os
from typing import Any

import openai

# The SDK needs some key at construction; an endpoint without one gets no Authorization header at all.
_NO_KEY = "no-key"
_OMIT_AUTHORIZATION = {"Authorization": openai.Omit()}


class EndpointChatModel:
    """Any OpenAI-compatible chat-completions endpoint, through the `openai` SDK.

    The API key is read from the environment variable `api_key_env` (never from config or a notebook).
    Connection errors, timeouts, 408, 409, 429 and 5xx answers are retried by the SDK (`max_retries`, with
    exponential backoff); then they raise an `openai.APIError`.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        max_tokens: int = 200,
        max_retries: int = 2,
    ):
        key = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise RuntimeError(f"the endpoint needs an API key in ${api_key_env} (unset)")
        self.name = model
        self.model = model
        self.max_tokens = max_tokens
        self.client = openai.OpenAI(
            base_url=base_url.rstrip("/"), api_key=key or _NO_KEY, timeout=timeout_s, max_retries=max_retries
        )
        self._headers = None if key else _OMIT_AUTHORIZATION
        self.usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "without_usage": 0}

    def complete(self, messages: list[dict[str, str]], attempt: int = 0) -> str:
        completion = self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            temperature=0.0 if attempt == 0 else 0.7,
            max_tokens=self.max_tokens,
            extra_headers=self._headers,
        )
        self._count_usage(completion)
        try:
            return completion.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            return ""  # a malformed completion is a malformed verdict: the judge retries, then counts it

    def _count_usage(self, completion: Any) -> None:
        """Add up the token usage the endpoint reports (OpenAI `usage`); answers without it are counted."""
        self.usage["requests"] += 1
        usage = getattr(completion, "usage", None)
        if usage is None or getattr(usage, "prompt_tokens", None) is None:
            self.usage["without_usage"] += 1
            return
        self.usage["prompt_tokens"] += int(usage.prompt_tokens or 0)
        self.usage["completion_tokens"] += int(getattr(usage, "completion_tokens", 0) or 0)

    def close(self) -> None:
        self.client.close()
