"""Clients for OpenAI-compatible chat-completions endpoints (NIM, vLLM, OpenAI, `flywheel serve`).

Used by the LLM judge (triage) and the endpoint router (evaluation): core, so stages share it.
"""

from __future__ import annotations

import os


class EndpointChatModel:
    """Any OpenAI-compatible chat-completions endpoint, over HTTP (httpx).

    The API key is read from the environment variable `api_key_env` (never from config or a notebook).
    Transport errors and 429/5xx answers are retried with exponential backoff; then they raise.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        max_tokens: int = 200,
        http_retries: int = 3,
    ):
        import httpx

        self.name = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.max_tokens = max_tokens
        self.http_retries = http_retries
        headers = {}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise RuntimeError(f"the endpoint needs an API key in ${api_key_env} (unset)")
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.Client(timeout=timeout_s, headers=headers)
        self.usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "without_usage": 0}

    def complete(self, messages: list[dict[str, str]], attempt: int = 0) -> str:
        import httpx
        from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

        def transient(exc: BaseException) -> bool:
            if isinstance(exc, httpx.HTTPStatusError):
                return exc.response.status_code == 429 or exc.response.status_code >= 500
            return isinstance(exc, httpx.TransportError)

        @retry(
            retry=retry_if_exception(transient),
            stop=stop_after_attempt(self.http_retries),
            wait=wait_exponential(multiplier=0.5, max=8),
            reraise=True,
        )
        def post() -> dict:
            body = {
                "model": self.model,
                "messages": messages,
                "temperature": 0.0 if attempt == 0 else 0.7,
                "max_tokens": self.max_tokens,
            }
            response = self.client.post(self.url, json=body)
            response.raise_for_status()
            return response.json()

        data = post()
        self._count_usage(data)
        try:
            return data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            return ""  # a malformed completion is a malformed verdict: the judge retries, then counts it

    def _count_usage(self, data: dict) -> None:
        """Add up the token usage the endpoint reports (OpenAI `usage`); answers without it are counted."""
        self.usage["requests"] += 1
        usage = data.get("usage") if isinstance(data, dict) else None
        if not isinstance(usage, dict) or "prompt_tokens" not in usage:
            self.usage["without_usage"] += 1
            return
        self.usage["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
        self.usage["completion_tokens"] += int(usage.get("completion_tokens") or 0)

    def close(self) -> None:
        self.client.close()
