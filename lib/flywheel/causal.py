"""Causal LMs as routers: the routing prompt, few-shot example selection, and two ways to decide.

- **Label scoring**: the log-likelihood of each expert name (plus the end-of-turn token) after the prompt. The
  prompt runs once with a KV cache; the cache is repeated for every expert and all the expert continuations
  are scored in ONE batched forward pass over that shared prefix.
- **Greedy generation**: generate a few tokens and parse an expert name; unparseable output is `None` (and
  counts as wrong in evaluation).

The same `RoutingPrompt` renders training examples (finetune) and queries (evaluation), so a fine-tuned model
sees at inference exactly what it was trained on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class RoutingPrompt:
    """A SHORT system prompt from the expert catalog; the expert name is the completion.

    style="short": only the expert names (they are self-describing; ~60 tokens with the question).
    style="long": one line per expert with its description (what a naive setup does; ~2.5x the tokens).
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


# --- few-shot -------------------------------------------------------------------------------------------


def embed_texts(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised MiniLM sentence embeddings (see flywheel.embeddings)."""
    from flywheel.embeddings import embed

    return embed(texts, batch_size=batch_size)


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
        similarity = embed_texts(queries) @ self.embeddings.T
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
        import pandas as pd

        pd.DataFrame({"text": self.texts, "label": self.labels}).to_parquet(folder / "fewshot_pool.parquet")
        np.save(folder / "fewshot_embeddings.npy", self.embeddings)

    @classmethod
    def load(cls, folder: Path, k: int, max_tokens: int) -> FewShotSelector:
        import pandas as pd

        pool = pd.read_parquet(folder / "fewshot_pool.parquet")
        embeddings = np.load(folder / "fewshot_embeddings.npy")
        return cls(pool["text"].tolist(), pool["label"].tolist(), embeddings, k, max_tokens)


# --- the router -------------------------------------------------------------------------------------------


class CausalLMRouter:
    """Routes with a causal LM by label scoring (default) or greedy generation."""

    def __init__(
        self,
        name: str,
        model,
        tokenizer,
        prompt: RoutingPrompt,
        decision: str = "score",
        few_shot: FewShotSelector | None = None,
        soft_prompt=None,
        batch_size: int = 16,
    ):
        import torch

        if decision not in ("score", "generate"):
            raise ValueError(f"decision must be 'score' or 'generate', not {decision!r}")
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.decision = decision
        self.few_shot = few_shot
        self.soft_prompt = soft_prompt  # [n_virtual, hidden] prompt-tuning embeddings, or None
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # Each label as the model is trained to emit it: the name, then the end-of-turn (EOS) token.
        ids = [
            [*tokenizer(label, add_special_tokens=False).input_ids, tokenizer.eos_token_id]
            for label in prompt.names
        ]
        width = max(len(x) for x in ids)
        self.label_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
        self.label_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            self.label_ids[i, : len(row)] = torch.tensor(row)
            self.label_mask[i, : len(row)] = 1
        self.max_new_tokens = width

    # -- public API
    def predict(self, texts: list[str]) -> list[str | None]:
        out: list[str | None] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            if self.decision == "score":
                scores = self.score(batch)
                out.extend(self.prompt.names[i] for i in scores.argmax(1))
            else:
                out.extend(parse_expert(t, self.prompt.names) for t in self.generate(batch))
        return out

    def prompts(self, texts: list[str]) -> list[str]:
        examples = self.few_shot.select(texts, self.tokenizer) if self.few_shot else [()] * len(texts)
        return [self.prompt.render(self.tokenizer, t, ex) for t, ex in zip(texts, examples, strict=True)]

    def score(self, texts: list[str]) -> np.ndarray:
        """[len(texts), n_experts] log-likelihood of each expert name (with EOS) after each prompt."""
        import torch

        n_experts, width = self.label_ids.shape
        with torch.inference_mode():
            prefix = self._prefix(self.prompts(texts))
            out = self.model(**prefix["inputs"], use_cache=True)
            first = torch.log_softmax(out.logits[:, -1].float(), -1)  # [B, V]
            labels = self.label_ids.to(self.device)
            mask = self.label_mask.to(self.device)
            scores = first[:, labels[:, 0]]  # [B, E]
            if width > 1:
                batch = first.shape[0]
                cache = getattr(out, "cache", None) or out.past_key_values
                cache.batch_repeat_interleave(n_experts)
                cont = labels[:, :-1].repeat(batch, 1)  # [B*E, W-1]: each expert's tokens but the last
                cont_mask = mask[:, :-1].repeat(batch, 1)
                attn = torch.cat([prefix["mask"].repeat_interleave(n_experts, 0), cont_mask], 1)
                start = prefix["lengths"].repeat_interleave(n_experts).unsqueeze(1)
                positions = start + torch.arange(width - 1, device=self.device).unsqueeze(0)
                logits = self.model(
                    input_ids=cont, attention_mask=attn, position_ids=positions, cache=cache
                ).logits
                logp = torch.log_softmax(logits.float(), -1)
                target = labels[:, 1:].repeat(batch, 1)
                token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask[:, 1:].repeat(batch, 1)
                scores = scores + token_logp.sum(-1).view(batch, n_experts)
        return scores.cpu().numpy()

    def generate(self, texts: list[str]) -> list[str]:
        """Greedy generation of a few tokens after each prompt; the decoded new text."""
        import torch

        with torch.inference_mode():
            prefix = self._prefix(self.prompts(texts))
            kwargs = dict(prefix["inputs"])
            kwargs.pop("position_ids", None)
            new = self.model.generate(
                **kwargs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        if "input_ids" in kwargs:
            new = new[:, kwargs["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def first_token_seconds(self, text: str) -> float:
        """Time to the first generated token for one query (the prompt's forward pass)."""
        import time

        import torch

        started = time.perf_counter()
        with torch.inference_mode():
            prefix = self._prefix(self.prompts([text]))
            self.model(**prefix["inputs"], use_cache=True).logits[:, -1].argmax(-1)
        return time.perf_counter() - started

    # -- internals
    def _prefix(self, prompts: list[str]) -> dict:
        """Left-padded prompt batch (with the soft prompt in front when prompt tuning)."""
        import torch

        self.tokenizer.padding_side = "left"
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        mask = enc["attention_mask"]
        if self.soft_prompt is not None:
            virtual = self.soft_prompt.to(self.device, self.model.dtype)
            embeds = self.model.get_input_embeddings()(enc["input_ids"])
            embeds = torch.cat([virtual.unsqueeze(0).expand(len(prompts), -1, -1), embeds], 1)
            mask = torch.cat(
                [torch.ones(len(prompts), virtual.shape[0], dtype=mask.dtype, device=self.device), mask], 1
            )
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            inputs = {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": positions}
        else:
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            inputs = {"input_ids": enc["input_ids"], "attention_mask": mask, "position_ids": positions}
        return {"inputs": inputs, "mask": mask, "lengths": mask.sum(-1)}


def load_causal_router(folder: Path, card: dict, decision: str | None = None) -> CausalLMRouter:
    """A causal router from a candidate folder; candidate.json says where the weights are:
    weights="model" (a full model folder), "adapter" (peft LoRA merged at load / prompt tuning on `base`),
    "source" (zero/few-shot: the named source, untouched)."""
    import torch

    from flywheel.sources import load_causal_lm

    folder = Path(folder)
    on_gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    weights = card["weights"]
    soft_prompt = None
    if weights == "model":
        model, tokenizer = load_causal_lm(str(folder / "model"), dtype=dtype)
    elif weights == "source":
        model, tokenizer = load_causal_lm(card["source"], dtype=dtype)
    elif weights == "adapter":
        from peft import PeftModel

        model, tokenizer = load_causal_lm(card["source"], dtype=dtype)
        peft_model = PeftModel.from_pretrained(model, folder / "adapter")
        if card["method"] == "prompt_tuning":
            soft_prompt = peft_model.get_prompt_embedding_to_save("default").detach()
            model = peft_model.get_base_model()
        else:
            model = peft_model.merge_and_unload()
    else:
        raise ValueError(f"{folder}: unknown weights {weights!r}")
    if on_gpu:
        model = model.to("cuda")
    few_shot = None
    if card.get("few_shot_k"):
        few_shot = FewShotSelector.load(folder, card["few_shot_k"], card["few_shot_max_tokens"])
    # card["labels"] keeps the catalog's order (the card's JSON keys are sorted): the prompt lists the experts
    # in the order the model was trained with.
    experts = {name: card["experts"].get(name, "") for name in card["labels"]}
    prompt = RoutingPrompt(experts, style=card.get("prompt_style", "short"))
    return CausalLMRouter(
        card["name"],
        model,
        tokenizer,
        prompt,
        decision=decision or card.get("decision", "score"),
        few_shot=few_shot,
        soft_prompt=soft_prompt,
    )
