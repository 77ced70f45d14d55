"""Run creation and the one atomic-write helper (flywheel.core.files)."""

import json
import os
import stat

import numpy as np
import pytest

from flywheel.core.config import REPO_ROOT, config_text
from flywheel.core.files import atomic_path, atomic_write_json, atomic_write_text, read_json
from flywheel.core.runs import NOTEBOOKS, STAGES, RunDir, create_run, open_or_create_run

TEST_CONFIG = REPO_ROOT / "configs" / "test.yaml"


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "manifest.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    atomic_write_json(path, {"c": 3})
    assert path.read_text() == '{\n  "c": 3\n}\n'
    assert read_json(path) == {"c": 3}
    assert os.listdir(path.parent) == ["manifest.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_text(path, "old\n")
    with pytest.raises(ValueError, match="half way"), atomic_path(path) as tmp:
        tmp.write_text("new, but not all of it")
        raise ValueError("half way")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["summary.json"]


def test_the_temporary_keeps_the_suffix_so_writers_do_not_add_one(tmp_path):
    path = tmp_path / "cache.npz"
    with atomic_path(path) as tmp:
        np.savez(tmp, keys=np.array(["a"]))  # numpy appends .npz to a name without it
    assert os.listdir(tmp_path) == ["cache.npz"]
    assert np.load(path)["keys"].tolist() == ["a"]


def test_private_files_are_the_owners_only_and_others_follow_the_umask(tmp_path):
    old_umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "state.json", "{}", private=True)
        atomic_write_text(tmp_path / "report.html", "<p>")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(tmp_path / "state.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "report.html").st_mode) == 0o644


def test_create_run_writes_config_and_a_manifest_with_every_stage_pending(tmp_path):
    run = create_run(TEST_CONFIG, runs_root=tmp_path / "runs")
    manifest = json.loads(run.manifest_path.read_text())
    assert run.path.parent == (tmp_path / "runs").resolve()
    assert run.config_path.read_text() == config_text(TEST_CONFIG)  # the overlay resolved
    assert manifest["cycle_id"] == run.cycle_id and manifest["status"] == "created"
    assert manifest["stages"] == {s: {"status": "pending", "notebook": NOTEBOOKS[s]} for s in STAGES}
    assert all((REPO_ROOT / path).is_file() for path in NOTEBOOKS.values())
    assert create_run(TEST_CONFIG, runs_root=tmp_path / "runs").path != run.path  # never the same folder


def test_open_or_create_run_opens_a_run_and_refuses_a_folder_that_is_not_one(tmp_path):
    run = create_run(TEST_CONFIG, tmp_path / "run")
    assert open_or_create_run(run.path).path == run.path
    with pytest.raises(FileNotFoundError, match=r"no manifest\.json"):
        open_or_create_run(tmp_path)
    assert isinstance(open_or_create_run(str(run.path)), RunDir)
