"""Issue 11 item 14 (masker side) and the throughput item: one way to build the configured masker, defaults
that are the config's defaults, and no NER pass where no name can be."""

import pytest

from flywheel.core import pii
from flywheel.core.config import REPO_ROOT, PiiConfig, load_config
from flywheel.core.pii import PiiMasker

DEMO = load_config(REPO_ROOT / "configs" / "demo.yaml")


def test_from_config_is_the_one_masker_per_settings():
    from_pii = PiiMasker.from_config(DEMO.collect.pii)
    assert PiiMasker.from_config(DEMO) is from_pii  # the whole config works too
    assert PiiMasker.from_config(DEMO.collect.pii.model_copy()) is from_pii  # shared: one NER load
    assert from_pii.settings == {
        "employee_id_pattern": DEMO.collect.pii.employee_id_pattern,
        "phone_region": DEMO.collect.pii.phone_region,
        "person_names": DEMO.collect.pii.person_names,
        "keep_terms": sorted(DEMO.collect.pii.keep_terms),
    }


def test_the_default_masker_is_the_default_config():
    assert PiiMasker().settings == PiiMasker.from_config(PiiConfig()).settings
    assert PiiMasker.from_config(None) is PiiMasker.from_config(PiiConfig())


def test_configured_keep_terms_are_never_people():
    masker = PiiMasker.from_config(DEMO.collect.pii)
    for term in DEMO.collect.pii.keep_terms:
        text = f"my manager said {term} is slow, can {term} run on two GPUs?"
        assert masker.mask(text) == text


def test_product_names_are_not_people_even_without_keep_terms():
    # the router service once masked "Vega Toolkit" as a person with a masker built without the config
    text = "How much revenue does Vega Toolkit bring in?"
    assert PiiMasker().mask(text) == text


def test_texts_without_a_possible_name_skip_the_model(monkeypatch):
    def no_model():
        raise AssertionError("the NER model ran")

    monkeypatch.setattr(pii, "load_ner", no_model)
    masker = PiiMasker(keep_terms=["Vega Toolkit", "Orion Data Platform"])
    texts = [
        "vpn down",
        "Is Vega Toolkit GA? Hello, How do I install it",
        "the Orion Data Platform docs page is down",
        "mail a@b.co or call 408-555-0123",
        "Does Helios support Windows",
    ]
    assert masker.mask_many(texts) == [
        "vpn down",
        "Is Vega Toolkit GA? Hello, How do I install it",
        "the Orion Data Platform docs page is down",
        "mail [EMAIL] or call [PHONE]",
        "Does Helios support Windows",
    ]


@pytest.mark.parametrize("n_process", [1, 2])
def test_batch_options_do_not_change_the_result(n_process, monkeypatch):
    monkeypatch.setattr(pii, "N_PROCESS_MIN_WINDOWS", 1)  # a second process even for a few windows
    texts = ["my manager Anna Patel said hi", "vpn down", "Noa Levy from my team asked"] * 3
    masker = PiiMasker(batch_size=2, n_process=n_process)
    assert masker.mask_many(texts) == PiiMasker().mask_many(texts)
