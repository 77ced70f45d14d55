"""The feedback form: widget callbacks headless, and the Voilà page driven in a real headless Chromium."""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from tiny_router import train_tiny_router

from flywheel.core.config import REPO_ROOT
from flywheel.core.registry import Registry
from flywheel.core.store import Store, interactions
from flywheel.serve.form import FeedbackForm, open_form
from flywheel.serve.records import stored_interaction
from flywheel.serve.routing import RouterProvider

EXPERTS = {"it_help": "Laptops, VPN and passwords.", "travel_expenses": "Travel and expenses."}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return train_tiny_router(tmp_path_factory.mktemp("form") / "tiny-tfidf")


@pytest.fixture
def form(store, tiny_model):
    return FeedbackForm(store, RouterProvider(Registry(store), tiny_model), EXPERTS, user="dana")


def test_route_shows_the_expert_and_a_reply_placeholder(form):
    form.question.value = "my vpn is not connecting"
    routed = form.on_route()
    assert routed.expert == "it_help"
    assert routed.model == "tiny-tfidf"
    assert "it_help" in form.routing.value and "Laptops, VPN" in form.routing.value
    assert "it_help expert agent" in form.reply.value


def test_submit_stores_an_interaction_with_feedback(form, store):
    form.question.value = "book a business flight"
    form.on_route()
    form.thumbs.value = "down"
    form.comment.value = "I wanted the travel policy"
    interaction_id = form.on_submit()
    assert interaction_id is not None
    row = stored_interaction(store, interaction_id)
    assert row["query"] == "book a business flight"
    assert row["routed_expert"] == "travel_expenses"
    assert (row["thumbs"], row["comment"], row["satisfied"]) == ("down", "I wanted the travel policy", False)
    assert row["source"] == "feedback-form"
    assert row["user_id"].startswith("u-") and "dana" not in row["user_id"]
    assert json.loads(row["response_json"])["choices"][0]["message"]["content"] == "travel_expenses"
    assert "Saved as" in form.status.value
    # The form is cleared for the next question.
    assert (form.question.value, form.comment.value, form.thumbs.value) == ("", "", None)


def test_submit_with_a_rating_only_and_without_routing_first(form, store):
    form.question.value = "reset my password please"
    form.rating.value = 4
    interaction_id = form.on_submit()  # routes on the way
    row = stored_interaction(store, interaction_id)
    assert (row["routed_expert"], row["rating"], row["thumbs"], row["satisfied"]) == (
        "it_help",
        4,
        None,
        True,
    )


def test_a_changed_question_is_routed_again_before_storing(form, store):
    form.question.value = "my vpn is not connecting"
    form.on_route()
    form.question.value = "book a business flight"
    form.thumbs.value = "up"
    row = stored_interaction(store, form.on_submit())
    assert (row["query"], row["routed_expert"]) == ("book a business flight", "travel_expenses")


def test_submit_without_feedback_or_question_stores_nothing(form, store):
    form.question.value = "my vpn is not connecting"
    assert form.on_submit() is None
    assert "Rate the answer" in form.status.value
    form.question.value = "  "
    form.thumbs.value = "up"
    assert form.on_submit() is None
    assert "Type a question" in form.status.value
    assert store.count(interactions) == 0


def test_without_a_router_the_form_says_what_to_do(store):
    form = FeedbackForm(store, RouterProvider(Registry(store)), EXPERTS)
    form.question.value = "vpn down"
    form.thumbs.value = "up"
    assert form.on_route() is None
    assert form.on_submit() is None
    assert "promote" in form.status.value


def test_open_form_uses_the_promoted_model(tmp_path, tiny_model, monkeypatch):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("FLYWHEEL_STORE_URL", url)
    Registry(Store(url)).promote(tiny_model, reason="test")
    form = open_form(REPO_ROOT / "configs" / "test.yaml", tmp_path / "runs")
    form.question.value = "book a meeting room"
    form.rating.value = 2
    row = stored_interaction(Store(url), form.on_submit())
    assert row["model"] == "tiny-tfidf"
    assert row["routed_expert"] == "facilities"


# --- the served page in a real browser ---------------------------------------------------------------


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:g} s")


def test_voila_page_in_headless_chromium_stores_a_submission(tmp_path, tiny_model, chromium, free_port):
    chromium, chromedriver = chromium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url = f"sqlite:///{tmp_path / 'store.db'}"
    Registry(Store(url)).promote(tiny_model, reason="browser test")
    port = free_port
    voila = Path(sys.executable).parent / "voila"
    env = {**os.environ, "FLYWHEEL_STORE_URL": url}
    log = open(tmp_path / "voila.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [str(voila), "notebooks/01_collect/feedback_form.ipynb", f"--port={port}", "--no-browser",
         "--Voila.ip=127.0.0.1"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ):  # fmt: skip
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path, prefix='chromium-')}")
    driver = None
    try:
        _wait_http(f"http://127.0.0.1:{port}/", proc, timeout=60)
        driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 90)  # Voilà runs the notebook before the widgets render
        question = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".fw-question textarea")))
        question.send_keys("my vpn is not connecting")
        driver.find_element(By.CSS_SELECTOR, ".fw-thumbs button:first-child").click()
        driver.find_element(By.CSS_SELECTOR, ".fw-comment textarea").send_keys("from the browser")
        driver.find_element(By.CSS_SELECTOR, "button.fw-submit-button").click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".fw-status"), "Saved as"))
    except Exception:
        log.flush()
        print((tmp_path / "voila.log").read_text()[-3000:])
        raise
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    rows = Store(url).interactions_frame()
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row["query"], row["routed_expert"], row["thumbs"]) == (
        "my vpn is not connecting",
        "it_help",
        "up",
    )
    assert (row["comment"], row["source"]) == ("from the browser", "feedback-form")
