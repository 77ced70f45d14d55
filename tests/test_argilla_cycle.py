"""review.mode=wait in a real cycle: the triage notebook pushes to the embedded Argilla server and pauses
(`awaiting_review`, later cells skip their work); experts answer through the API; `--resume` pulls the
answers and finishes the stage."""

import pytest
import yaml
from conftest import require_binary

from flywheel.core.config import REPO_ROOT

pytestmark = pytest.mark.integration

STAGES = ("01_collect", "02_triage")


def test_wait_mode_pauses_after_the_push_and_resume_continues(tmp_path, monkeypatch):
    require_binary("redis-server", "Argilla's background jobs")
    from flywheel.argilla import server as argilla_server
    from flywheel.collect.sources import demo_truth_path
    from flywheel.core.context import open_stage
    from flywheel.cycle import run_cycle
    from flywheel.triage.panel import SimulatedPanel
    from flywheel.triage.review import open_review

    monkeypatch.setenv("FLYWHEEL_ARGILLA_HOME", str(tmp_path / "argilla"))
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    raw = yaml.safe_load((REPO_ROOT / "configs" / "test.yaml").read_text())
    raw["source"]["n_interactions"] = 120
    raw["review"] = {**raw.get("review", {}), "mode": "wait"}
    config_path = tmp_path / "wait.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    log = []
    try:
        run = run_cycle(config_path, runs_root=tmp_path / "runs", stages=STAGES, log=log.append)
        assert run.stage_status("02_triage") == "awaiting_review"
        assert run.manifest()["status"] == "awaiting_review"
        paused = run.results("02_triage")
        assert paused["awaiting_review"] is True and "ground_truth" not in paused
        assert paused["review"]["progress"]["pending"] > 0
        assert argilla_server.is_running(), "the server stays up for the experts while the cycle waits"

        # The experts answer in Argilla (here through the API, as the demo panel's users).
        stage = open_stage(run.path)
        session = open_review(stage.config, stage.store, log=log.append)
        panel = SimulatedPanel(demo_truth_path(run), stage.experts, 0.0, seed=1, size=1)
        assert panel.answer_in_argilla(session)["submitted"] == paused["review"]["progress"]["pending"]

        resumed = run_cycle(resume=run.path, stages=STAGES, log=log.append)
        assert resumed.stage_status("02_triage") == "done"
        done = resumed.results("02_triage")
        assert done["awaiting_review"] is False and done["ground_truth"]["train"] > 0
        review = resumed.manifest()["review"]
        assert review["mode"] == "wait" and review["simulated"] is False
        assert set(stage.store.reviews_frame()["origin"]) == {"argilla"}
    finally:
        argilla_server.down()
