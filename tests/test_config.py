import pytest
import yaml
from pydantic import ValidationError

from flywheel.core.config import REPO_ROOT, config_text, load_config, read_config_mapping


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
        ({"split": {"teacher_weight": 1.5}}, "teacher_weight"),
        ({"audit": {"validation_share": 1.0}}, "validation_share"),
        ({"split": {"teacher_labels": ["unsatisfied"]}}, "teacher_labels"),
        ({"typo_key": 1}, "typo_key"),
    ],
)
def test_bad_configs_are_rejected_clearly(patch, message):
    with pytest.raises(ValidationError, match=message):
        load_config(REPO_ROOT / "configs" / "test.yaml", patch)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_test_config_is_demo_with_only_its_own_keys_changed():
    demo = load_config(REPO_ROOT / "configs" / "demo.yaml").model_dump()
    test = load_config(REPO_ROOT / "configs" / "test.yaml").model_dump()
    overlay = yaml.safe_load((REPO_ROOT / "configs" / "test.yaml").read_text())
    assert overlay["extends"] == "demo.yaml" and len(overlay) < 10
    changed = {key for key in demo if demo[key] != test[key]}
    assert changed == {"name", "source", "audit", "candidates", "eval"}
    assert test["audit"] == {**demo["audit"], "size": 90}
    assert test["source"] == {**demo["source"], "n_interactions": 400, "weeks": 4}
    assert test["eval"]["prices"] == demo["eval"]["prices"]  # merged key by key


def test_an_overlay_replaces_lists_and_the_catalog_whole(tmp_path):
    base = yaml.safe_load((REPO_ROOT / "configs" / "demo.yaml").read_text())
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "team.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "mine.yaml").write_text(
        "extends: base/team.yaml\nname: mine\nexperts: {billing: Invoices., shipping: Parcels.}\n"
        "candidates: [{name: only, kind: tfidf_logreg}]\njudges: {embedding: {k: 5}}\n"
    )
    config = load_config(tmp_path / "mine.yaml")
    assert list(config.experts) == ["billing", "shipping"]
    assert [c.name for c in config.candidates] == ["only"]
    assert config.judges.embedding.k == 5 and config.judges.embedding.routing_threshold == 0.5


def test_a_run_keeps_the_overlay_resolved(tmp_path):
    """A run directory's config.yaml stands alone: it loads where demo.yaml is not beside it."""
    (tmp_path / "config.yaml").write_text(config_text(REPO_ROOT / "configs" / "test.yaml"))
    assert "extends" not in read_config_mapping(tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == load_config(REPO_ROOT / "configs" / "test.yaml")
    demo_text = (REPO_ROOT / "configs" / "demo.yaml").read_text()
    assert config_text(REPO_ROOT / "configs" / "demo.yaml") == demo_text  # comments and all


def test_an_extends_loop_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nname: b\n")
    with pytest.raises(ValueError, match="loops back"):
        load_config(tmp_path / "a.yaml")


def test_a_log_source_kind_must_be_registered(tmp_path):
    """`source.kind` names a plug-in of the `flywheel.log_sources` entry point group; a typo lists them."""
    (tmp_path / "mine.yaml").write_text(
        "extends: " + str(REPO_ROOT / "configs" / "test.yaml") + "\nsource: {kind: s3}\n"
    )
    with pytest.raises(ValidationError, match=r"unknown log source 's3'; registered: demo, files"):
        load_config(tmp_path / "mine.yaml")
