"""environment.yml (conda users) mirrors pyproject.toml's exact pins."""

import tomllib

import yaml

from flywheel.core.config import REPO_ROOT


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    # what `make` installs
    wanted = set(project["dependencies"]) | set(extras["dev"]) | set(extras["realtext"])
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_block = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert set(pip_block) == wanted
    assert all("==" in pin for pin in wanted), "every dependency is pinned exactly"
