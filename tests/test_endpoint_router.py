"""Evaluating a model hosted elsewhere: the endpoint router over real HTTP against `flywheel serve`."""

import pandas as pd
import pytest
from pydantic import ValidationError

from flywheel.config import CandidateConfig, EndpointConfig
from flywheel.finetune.train import train_candidate
from flywheel.models import load_router
from flywheel.serve.runner import TINY_EXAMPLES, train_tiny_router

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


def test_endpoint_config_is_required_for_endpoint_candidates():
    with pytest.raises(ValidationError, match="endpoint"):
        CandidateConfig(name="x", kind="endpoint")
    with pytest.raises(ValidationError, match="endpoint"):
        CandidateConfig(
            name="x", kind="tfidf_logreg", endpoint=EndpointConfig(base_url="http://x/v1", model="m")
        )
