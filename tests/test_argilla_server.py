"""The real embedded Argilla server: from scratch, SDK push, answers through the API, pull, outage and resume,
the SQL search engine's filters, and the web UI in headless Chromium.

The server's virtualenv is cached in a stable folder (`~/.cache/flywheel/argilla-venv`, or
FLYWHEEL_ARGILLA_VENV; `make argilla-venv` creates it); everything else (database, Redis, credentials) is
fresh in a temporary folder for this module.
"""

import json
import os
import signal
import stat
import tempfile
import threading

import httpx
import pytest
from conftest import SMALL_CATALOG, embedded_argilla, small_demo_world, wait_until

EXPERTS = SMALL_CATALOG


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_server):
    with embedded_argilla(tmp_path_factory.mktemp("argilla-home")) as info:
        yield info


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small demo world ingested into its own store."""
    return small_demo_world(tmp_path_factory.mktemp("world"), EXPERTS)


def session_for(server, store, name, experts_per_record=1):
    from flywheel.triage.review import ReviewSession, ReviewTarget

    target = ReviewTarget(server.url, server.api_key, server.workspace, name, embedded=True)
    return ReviewSession(target, list(EXPERTS), experts_per_record, retry_seconds=90, log=lambda m: None)


def unsatisfied(store):
    """The unsatisfactory interactions (whether or not a test has reviewed them already)."""
    interactions = store.interactions_frame()
    return interactions[interactions["satisfied"].eq(False)]


def api(server, method, path, **kwargs):
    headers = {"X-Argilla-Api-Key": server.api_key}
    return httpx.request(method, f"{server.url}/api/v1{path}", headers=headers, timeout=30, **kwargs)


def test_comes_up_from_scratch_local_only_with_private_credentials(server):
    from flywheel.argilla import server as argilla_server

    assert server.started and server.url.startswith("http://127.0.0.1:")
    assert server.redis == "redis-server"
    mode = stat.S_IMODE(os.stat(server.credentials_path).st_mode)
    assert mode == 0o600
    assert json.loads(server.credentials_path.read_text())["api_key"] == server.api_key
    assert server.api_key not in repr(server) and server.password not in repr(server)
    body = httpx.get(f"{server.url}/api/v1/status", timeout=10).json()
    assert body["version"] == "2.8.0"
    assert body["search_engine"]["engine"] == "flywheel-sql"
    state = argilla_server.status()
    assert state["running"] and all(state["pids"].values())
    assert server.api_key not in json.dumps(state)
    assert httpx.get(f"{server.url}/", timeout=10).status_code == 200  # the web UI is served
    again = argilla_server.up()
    assert not again.started and again.url == server.url  # idempotent
    print(f"\nembedded Argilla came up in {server.seconds:.1f} s (server process to HTTP ready)")


def test_push_simulated_panel_through_the_api_pull_and_labels(server, world):
    from flywheel.core.labels import majority_labels
    from flywheel.demo.panel import SimulatedPanel
    from flywheel.triage.review import agreement

    out, store = world
    queue = unsatisfied(store)
    assert len(queue) >= 10
    session = session_for(server, store, "panel-roundtrip", experts_per_record=2)
    first = session.push(queue)
    assert first.pushed == len(queue)
    assert session.push(queue).pushed == 0  # only records not yet pushed
    assert session.progress() == {"total": len(queue), "completed": 0, "pending": len(queue)}

    panel = SimulatedPanel(out / "hidden_truth.jsonl", list(EXPERTS), error_rate=0.2, seed=3, size=2)
    answered = panel.answer_in_argilla(session)
    assert answered["submitted"] == 2 * len(queue)
    assert panel.answer_in_argilla(session)["submitted"] == 0  # resumes: answered records are skipped

    # The answers arrived through the API as the panel's own users.
    users = {u["username"]: u["id"] for u in api(server, "GET", "/users").json()["items"]}
    record = api(server, "GET", f"/datasets/{session.dataset.id}/records", params={"include": "responses"})
    responders = {r["user_id"] for item in record.json()["items"] for r in item["responses"]}
    assert responders == {users["simulated-expert-1"], users["simulated-expert-2"]}
    assert session.progress()["completed"] == len(queue)

    pulled = session.pull(store, panel.reviewers)
    assert pulled.added == 2 * len(queue)
    assert session.pull(store, panel.reviewers).added == 0  # nothing doubled
    reviews = store.reviews_frame()
    assert set(reviews["origin"]) == {"simulated"}
    labels = majority_labels(reviews)
    assert len(labels) == len(queue)
    truth = {json.loads(line)["id"]: json.loads(line) for line in (out / "hidden_truth.jsonl").open()}
    agreeing = labels[labels["label"] != "ambiguous"]
    right = sum((truth[i]["true_expert"] or "out_of_scope") == label for i, label in agreeing.values[:, :2])
    assert right / len(agreeing) > 0.8  # two experts who agree are usually right
    kappa = agreement(reviews)
    assert kappa["items_with_overlap"] == len(queue)
    assert kappa["cohen_kappa"]["simulated-expert-1~simulated-expert-2"] is not None
    rates = f"push {first.records_per_s} records/s, pull {pulled.records_per_s} records/s"
    print(f"\n{rates} ({len(queue)} records)")


def test_search_engine_filters_answer_and_unsupported_ones_are_4xx(server, world):
    _, store = world
    queue = unsatisfied(store)
    session = session_for(server, store, "search-engine")
    session.push(queue)
    dataset_id = session.dataset.id
    routed = queue["routed_expert"].iloc[0]

    def search(body, path="/me/datasets"):
        return api(server, "POST", f"{path}/{dataset_id}/records/search", json=body)

    by_metadata = search(
        {
            "filters": {
                "and": [
                    {
                        "type": "terms",
                        "scope": {"entity": "metadata", "metadata_property": "routed_to"},
                        "values": [routed],
                    }
                ]
            }
        }
    )
    assert by_metadata.status_code == 200, by_metadata.text
    assert by_metadata.json()["total"] == int((queue["routed_expert"] == routed).sum())

    pending = search(
        {
            "filters": {
                "and": [
                    {
                        "type": "terms",
                        "scope": {"entity": "response", "property": "status"},
                        "values": ["pending"],
                    }
                ]
            }
        }
    )
    assert pending.status_code == 200 and pending.json()["total"] == len(queue)

    word = queue["query_masked"].iloc[0].split()[0]
    text = search({"query": {"text": {"q": word, "field": "question"}}})
    assert text.status_code == 200 and text.json()["total"] >= 1

    sorted_ = search(
        {"sort": [{"scope": {"entity": "metadata", "metadata_property": "logged_at"}, "order": "desc"}]}
    )
    assert sorted_.status_code == 200

    progress = api(server, "GET", f"/datasets/{dataset_id}/progress")
    assert progress.json()["total"] == len(queue)
    metrics = api(
        server, "GET", f"/metadata-properties/{_metadata_id(server, dataset_id, 'routed_to')}/metrics"
    )
    assert metrics.status_code == 200 and metrics.json()["type"] == "terms"

    unsupported = search(
        {
            "filters": {
                "and": [{"type": "range", "scope": {"entity": "response", "property": "status"}, "ge": 1}]
            }
        }
    )
    assert 400 <= unsupported.status_code < 500, unsupported.text
    assert "does not support" in unsupported.text


def _metadata_id(server, dataset_id, name):
    items = api(server, "GET", f"/me/datasets/{dataset_id}/metadata-properties").json()["items"]
    return next(item["id"] for item in items if item["name"] == name)


def test_killed_mid_push_restart_and_resume_every_record_exactly_once(server, world):
    from flywheel.argilla import server as argilla_server

    _, store = world
    queue = unsatisfied(store)
    session = session_for(server, store, "outage")
    outcome = {}

    def push():
        try:
            outcome["report"] = session.push(queue, batch_size=3)
        except Exception as err:  # recorded, then the push is simply run again
            outcome["error"] = err

    worker = threading.Thread(target=push)
    worker.start()
    wait_until(lambda: session.progress()["total"] >= 3, 60, "the first batches to arrive")
    pid = argilla_server.status()["pids"]["server"]
    os.kill(pid, signal.SIGKILL)  # the server dies in the middle of the push
    assert "report" not in outcome, "the push had finished before the server was killed"
    wait_until(lambda: not argilla_server.status()["running"], 30, "the killed server to be seen as down")
    argilla_server.up()  # back up (same database); the push retries with backoff meanwhile
    worker.join(timeout=180)
    assert not worker.is_alive()
    if "error" in outcome:  # retries ran out: the documented remedy is to push again
        outcome["report"] = session.push(queue, batch_size=3)
    records = api(server, "GET", f"/datasets/{session.dataset.id}/records", params={"limit": 1000}).json()
    ids = [item["external_id"] for item in records["items"]]
    assert sorted(ids) == sorted(queue["id"]), "every record exactly once"
    assert session.push(queue).pushed == 0


def test_web_ui_login_open_dataset_and_submit_one_answer(server, world, chromium):
    chromium, driver_path = chromium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    _, store = world
    session = session_for(server, store, "ui-review")
    session.push(unsatisfied(store).head(3))
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    flags = (
        "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking"
    )
    flags += " --disable-component-update --disable-sync --window-size=1400,1000"
    for flag in flags.split():
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}")
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    wait = WebDriverWait(browser, 60)
    try:
        browser.get(f"{server.url}/sign-in")
        wait.until(ec.presence_of_element_located((By.NAME, "Username"))).send_keys(server.username)
        browser.find_element(By.NAME, "Password").send_keys(server.password)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda b: "/sign-in" not in b.current_url)
        browser.get(f"{server.url}/dataset/{session.dataset.id}/annotation-mode")
        wait.until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, "label[for=correct_expert_facilities]"))
        ).click()
        browser.find_element(By.CSS_SELECTOR, "label[for=cause_routing]").click()
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button.button--submit"))).click()
        wait_until(lambda: len(session.answers()[0]) > 0, 30, "the answer to reach the API", every=0.5)
        answers = session.answers()[0].to_dict("records")
    finally:
        browser.quit()
    assert len(answers) == 1
    assert answers[0]["reviewer"] == server.username and answers[0]["origin"] == "argilla"
    assert answers[0]["correct_expert"] == "facilities" and answers[0]["cause"] == "routing"
