"""The feedback form: a colleague asks a question, sees where the router sends it, rates it and comments.

An ipywidgets app (`notebooks/01_collect/feedback_form.ipynb`, served as a web page with Voilà). It routes
with the same router as the service (the registry's current promotion, else `serve.default_model`) and
stores each submission as an interaction with feedback in the documented log schema, through the same
record builder as the service: it shows up downstream exactly like production traffic.
"""

from __future__ import annotations

import html
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets

from flywheel.core.config import PiiConfig, load_config
from flywheel.core.registry import Registry, default_export_path
from flywheel.core.store import Store
from flywheel.serve.records import (
    UNROUTABLE,
    RecordRejected,
    chat_completion,
    count_tokens,
    interaction_record,
    new_completion_id,
    pseudonym,
    store_interaction,
)
from flywheel.serve.routing import DeferralFailed, NoRouterAvailable, RouterProvider, provider_for

SOURCE = "feedback-form"


@dataclass
class Routed:
    question: str
    expert: str
    model: str
    latency_ms: float


class FeedbackForm:
    """The widgets and their callbacks; `widget` is what the notebook displays. The handlers return what
    they did (the routing, the stored interaction id or None) so they can be tested without a browser."""

    def __init__(
        self,
        store: Store,
        provider: RouterProvider,
        experts: dict[str, str] | None = None,
        user: str = "colleague",
        pii: PiiConfig | None = None,
    ):
        self.store, self.provider, self.experts = store, provider, experts or {}
        self.pii = pii  # the config's collect.pii: the one masker every stored text goes through
        self.user_id = pseudonym(user, "u")
        self.session_id = f"s-form-{uuid.uuid4().hex[:12]}"
        self.routed: Routed | None = None
        self.submitted: list[str] = []

        self.question = widgets.Textarea(
            placeholder="Ask a question as you would ask the assistant", layout=widgets.Layout(width="40em")
        )
        self.route_button = widgets.Button(description="Where does it go?")
        self.routing = widgets.HTML()
        self.reply = widgets.HTML()
        self.thumbs = widgets.ToggleButtons(
            options=[("👍 good", "up"), ("👎 bad", "down")], value=None, description="Thumbs"
        )
        self.rating = widgets.ToggleButtons(options=[1, 2, 3, 4, 5], value=None, description="or rate")
        self.comment = widgets.Textarea(
            placeholder="Comment (optional): what should have happened?", layout=widgets.Layout(width="40em")
        )
        self.submit_button = widgets.Button(description="Submit", button_style="primary")
        self.status = widgets.HTML()
        for name in ("question", "route_button", "thumbs", "rating", "comment", "submit_button", "status"):
            getattr(self, name).add_class(f"fw-{name.replace('_', '-')}")
        self.route_button.on_click(self.on_route)
        self.submit_button.on_click(self.on_submit)
        self.widget = widgets.VBox(
            [
                self.question,
                self.route_button,
                self.routing,
                self.reply,
                self.thumbs,
                self.rating,
                self.comment,
                self.submit_button,
                self.status,
            ]
        )

    # --- callbacks -------------------------------------------------------------------------------
    def on_route(self, _button: object = None) -> Routed | None:
        """Route the question and show where it goes (and the expert's reply placeholder)."""
        question = self.question.value.strip()
        if not question:
            self._say("Type a question first.", error=True)
            return None
        try:
            active = self.provider.get()
        except NoRouterAvailable as err:
            self._say(str(err), error=True)
            return None
        started = time.perf_counter()
        try:
            decision = active.route(question)
        except DeferralFailed as err:  # no answer rather than the student's below its threshold
            self._say(f"{err}; try again later.", error=True)
            return None
        expert = decision.expert or UNROUTABLE
        latency_ms = 1000 * (time.perf_counter() - started)
        self.routed = Routed(question, expert, decision.model, latency_ms)
        about = self.experts.get(expert, "")
        self.routing.value = (
            f"<b>Routed to:</b> <code>{html.escape(expert)}</code> {html.escape(about)} "
            f"<small>({html.escape(decision.model)}, {latency_ms:.1f} ms)</small>"
        )
        self.reply.value = (
            f"<i>[The {html.escape(expert)} expert agent's answer would appear here.]</i> "
            "Was this the right expert for your question?"
        )
        self._say("")
        return self.routed

    def on_submit(self, _button: object = None) -> str | None:
        """Store the question, its routing and the feedback as one interaction; returns its id."""
        question = self.question.value.strip()
        if not question:
            self._say("Type a question first.", error=True)
            return None
        comment = self.comment.value.strip() or None
        feedback = {"thumbs": self.thumbs.value, "rating": self.rating.value, "comment": comment}
        if feedback["thumbs"] is None and feedback["rating"] is None and not comment:
            self._say("Rate the answer (thumbs or 1–5) or leave a comment before submitting.", error=True)
            return None
        routed = self.routed if self.routed and self.routed.question == question else self.on_route()
        if routed is None:
            return None
        completion_id = new_completion_id()
        request = {"model": routed.model, "messages": [{"role": "user", "content": question}]}
        response = chat_completion(completion_id, routed.model, routed.expert, count_tokens(question))
        record = interaction_record(
            interaction_id=completion_id,
            request=request,
            response=response,
            routed_expert=routed.expert,
            model=routed.model,
            latency_ms=routed.latency_ms,
            user_id=self.user_id,
            session_id=self.session_id,
            feedback=feedback,
        )
        try:
            store_interaction(self.store, record, SOURCE, self.pii)
        except RecordRejected as err:
            self._say(f"Not saved: {err}", error=True)
            return None
        self.submitted.append(completion_id)
        self._reset()
        self._say(f"Thanks! Saved as {completion_id} (routed to {routed.expert}).")
        return completion_id

    # --- helpers ---------------------------------------------------------------------------------
    def _say(self, text: str, error: bool = False) -> None:
        color = "#b00020" if error else "#1b5e20"
        self.status.value = f'<span style="color:{color}">{html.escape(text)}</span>' if text else ""

    def _reset(self) -> None:
        self.question.value = ""
        self.comment.value = ""
        self.thumbs.value = None
        self.rating.value = None
        self.routing.value = ""
        self.reply.value = ""
        self.routed = None


def open_form(
    config_path: str | Path, runs_dir: str | Path = "runs", user: str = "colleague"
) -> FeedbackForm:
    """The form over a config's store and registry (FLYWHEEL_STORE_URL overrides the store, as everywhere)."""
    config = load_config(config_path)
    runs_root = Path(runs_dir)
    runs_root.mkdir(parents=True, exist_ok=True)
    store = Store(config.store_url(runs_root))
    registry = Registry(store, default_export_path(runs_root, config.name))
    provider = provider_for(config, registry)
    return FeedbackForm(store, provider, config.experts, user=user, pii=config.collect.pii)
