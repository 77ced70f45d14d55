"""Evaluating a model hosted elsewhere: the endpoint router over real HTTP against `flywheel serve`."""

import pandas as pd
import pytest
from pydantic import ValidationError
from tiny_router import TINY_EXAMPLES, train_tiny_router

from flywheel.core.config import CandidateConfig, EndpointConfig
from flywheel.core.routers import load_router
from flywheel.finetune.train import train_candidate

CATALOG = {name: f"questions about {name}" for name in TINY_EXAMPLES}


def test_endpoint_candidate_routes_through_the_router_service(router_service, tmp_path):
    candidate = CandidateConfig(
        name="hosted", kind="endpoint", endpoint=EndpointConfig(base_url=router_service, model="router")
    )
    record = train_candidate(candidate, pd.DataFrame({"text": [], "label": []}), CATALOG, tmp_path / "c", 0)
    assert record["trainable_parameters"] == 0
    router = load_router(tmp_path / "c")
    questions = ["my laptop will not boot", "how much parental leave do I get", "book a meeting room"]
    served = router.predict(questions)
    # The service routes with the fixture's tiny TF-IDF model (seeded): the same model trained here must
    # give exactly the answers that came back over HTTP.
    same_model = load_router(train_tiny_router(tmp_path / "same"))
    assert served == same_model.predict(questions)
    assert None not in served
    logged = router_service.store.interactions_frame(["query"])["query"].tolist()
    assert set(questions) <= set(logged)  # each evaluation query reached the service over HTTP


def test_endpoint_cost_is_its_reported_token_usage_times_its_prices(router_service, tmp_path):
    from flywheel.core.config import load_config
    from flywheel.evaluate.scoring import candidate_cost

    prices = {"usd_per_m_tokens_in": 3.0, "usd_per_m_tokens_out": 15.0, "price_note": "list price, test"}
    endpoint = EndpointConfig(base_url=router_service, model="router", **prices)
    candidate = CandidateConfig(name="priced", kind="endpoint", endpoint=endpoint)
    train_candidate(candidate, pd.DataFrame({"text": [], "label": []}), CATALOG, tmp_path / "c", 0)
    router = load_router(tmp_path / "c")
    eval_cfg = load_config("configs/test.yaml").eval
    router.predict(["my laptop will not boot", "book a meeting room"])
    tokens_in, tokens_out = router.mean_tokens()
    assert tokens_in > 20 and tokens_out >= 1  # the long routing prompt in, an expert name out
    cost = candidate_cost(router, seconds_per_query=0.5, eval_cfg=eval_cfg)
    assert cost["cost_per_1k"] == pytest.approx(1000 * (3.0 * tokens_in + 15.0 * tokens_out) / 1e6)
    assert cost["cost_basis"] == "list price, test"
    router.prices = (None, None)  # no prices: the client's wait at the hardware price, and it says so
    unpriced = candidate_cost(router, seconds_per_query=0.5, eval_cfg=eval_cfg)
    assert "client wait" in unpriced["cost_basis"]
    assert unpriced["cost_per_1k"] == pytest.approx(500 / 3600 * eval_cfg.prices.hardware_usd_per_hour)


def test_endpoint_config_is_required_for_endpoint_candidates():
    with pytest.raises(ValidationError, match="endpoint"):
        CandidateConfig(name="x", kind="endpoint")
    with pytest.raises(ValidationError, match="endpoint"):
        CandidateConfig(
            name="x", kind="tfidf_logreg", endpoint=EndpointConfig(base_url="http://x/v1", model="m")
        )
