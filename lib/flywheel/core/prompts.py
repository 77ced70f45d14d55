"""The routing prompt, shared by training (finetune) and inference (evaluation, the router service), so a
fine-tuned model sees at inference exactly what it was trained on; reading an expert name out of generated
text; and few-shot example selection by MiniLM similarity."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flywheel.core.embeddings import embed


@dataclass
class RoutingPrompt:
    """A SHORT system prompt from the expert catalog; the expert name is the completion.

    style="short": only the expert names (they are self-describing; ~67 tokens with the question).
    style="long": one line per expert with its description (what a naive setup does; ~2.5x the tokens).
    style="minimal": no catalog at all (~35 tokens): for fine-tuned models, which learn the experts from
    the completions; zero- and few-shot models need the names in the prompt.
    """

    experts: dict[str, str]
    style: str = "short"
    max_question_chars: int = 600

    @property
    def names(self) -> list[str]:
        return list(self.experts)

    def system(self) -> str:
        if self.style == "long":
            lines = "\n".join(f"- {name}: {text}" for name, text in self.experts.items())
            return (
                "You are the router of an employee support assistant. Read the employee's question and "
                "decide which expert agent should answer it. The experts are:\n"
                f"{lines}\nAnswer with the name of exactly one expert and nothing else."
            )
        if self.style == "minimal":
            return "Route the employee question to one expert."
        return "Route the employee question to one expert. Answer with its name only: " + ", ".join(
            self.names
        )

    def messages(self, question: str, examples: list[tuple[str, str]] = ()) -> list[dict]:
        messages = [{"role": "system", "content": self.system()}]
        for text, label in examples:
            messages.append({"role": "user", "content": self._clip(text)})
            messages.append({"role": "assistant", "content": label})
        messages.append({"role": "user", "content": self._clip(question)})
        return messages

    def render(self, tokenizer, question: str, examples: list[tuple[str, str]] = ()) -> str:
        """The prompt text, ending with the assistant turn's opening (the completion follows)."""
        return tokenizer.apply_chat_template(
            self.messages(question, examples), tokenize=False, add_generation_prompt=True
        )

    def completion(self, tokenizer, label: str) -> str:
        """What the model is trained to produce (trl appends the EOS token; scoring includes it too)."""
        return label

    def _clip(self, text: str) -> str:
        text = " ".join(str(text).split())
        return text[: self.max_question_chars]


def parse_expert(text: str, experts: list[str]) -> str | None:
    """An expert name from generated text: an exact answer, or the only expert named in it; else None."""
    cleaned = text.strip().strip("`'\".:;,!").strip().lower()
    if cleaned in experts:
        return cleaned
    found = {e for e in experts if re.search(rf"(?<![a-z_]){re.escape(e)}(?![a-z_])", text.lower())}
    return found.pop() if len(found) == 1 else None


# --- few-shot selection ---------------------------------------------------------------------------------


@dataclass
class FewShotSelector:
    """k train examples most similar to the query (MiniLM cosine), within a token budget."""

    texts: list[str]
    labels: list[str]
    embeddings: np.ndarray
    k: int = 4
    max_tokens: int = 256
    _token_counts: list[int] = field(default_factory=list)

    def select(self, queries: list[str], tokenizer) -> list[list[tuple[str, str]]]:
        if not self._token_counts:
            self._token_counts = [
                len(tokenizer(f"{t} {label}", add_special_tokens=False).input_ids) + 8  # + chat scaffolding
                for t, label in zip(self.texts, self.labels, strict=True)
            ]
        similarity = embed(queries) @ self.embeddings.T
        chosen = []
        for row in similarity:
            picked, used = [], 0
            for i in np.argsort(-row, kind="stable"):
                if len(picked) == self.k:
                    break
                if used + self._token_counts[i] > self.max_tokens:
                    continue
                picked.append((self.texts[i], self.labels[i]))
                used += self._token_counts[i]
            chosen.append(picked[::-1])  # the most similar example sits right before the question
        return chosen

    def save(self, folder: Path) -> None:
        pd.DataFrame({"text": self.texts, "label": self.labels}).to_parquet(folder / "fewshot_pool.parquet")
        np.save(folder / "fewshot_embeddings.npy", self.embeddings)

    @classmethod
    def load(cls, folder: Path, k: int, max_tokens: int) -> FewShotSelector:
        pool = pd.read_parquet(folder / "fewshot_pool.parquet")
        embeddings = np.load(folder / "fewshot_embeddings.npy")
        return cls(pool["text"].tolist(), pool["label"].tolist(), embeddings, k, max_tokens)
