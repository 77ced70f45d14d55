import pytest
from pydantic import ValidationError

from flywheel.core.config import REPO_ROOT, load_config


@pytest.mark.parametrize("name", ["demo", "test"])
def test_shipped_configs_load(name):
    config = load_config(REPO_ROOT / "configs" / f"{name}.yaml")
    assert len(config.experts) >= 6
    assert config.name == name


def test_store_url_default_env_and_config(tmp_path, monkeypatch):
    config = load_config(REPO_ROOT / "configs" / "test.yaml")
    monkeypatch.delenv("FLYWHEEL_STORE_URL", raising=False)
    assert config.store_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/store-test.db"
    monkeypatch.setenv("FLYWHEEL_STORE_URL", "postgresql://u:secret@db/flywheel")
    assert config.store_url(tmp_path) == "postgresql://u:secret@db/flywheel"


def test_overrides_merge_deeply():
    config = load_config(REPO_ROOT / "configs" / "test.yaml", {"eval": {"latency_queries": 7}})
    assert config.eval.latency_queries == 7
    assert config.eval.prices.hardware_usd_per_hour > 0


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"source": {"kind": "files", "paths": []}}, "needs source.paths"),
        (
            {"candidates": [{"name": "a", "kind": "tfidf_logreg"}, {"name": "a", "kind": "tfidf_logreg"}]},
            "unique",
        ),
        ({"split": {"test_size": 1.5}}, "test_size"),
        ({"typo_key": 1}, "typo_key"),
    ],
)
def test_bad_configs_are_rejected_clearly(patch, message):
    with pytest.raises(ValidationError, match=message):
        load_config(REPO_ROOT / "configs" / "test.yaml", patch)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
