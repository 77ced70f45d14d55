"""The peak memory a stage records is its own process's, not inherited from the process that started it."""

import subprocess
import sys

import pytest

OWN_AND_INHERITED = """
import resource
from flywheel.core.memory import peak_rss_mb
print(peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
GROWS = """
from flywheel.core.memory import peak_rss_mb
before = peak_rss_mb()
block = bytearray(200 * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
print(before, peak_rss_mb())
"""


def printed(script: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return [float(x) for x in out.split()]


def test_the_peak_grows_with_what_the_process_holds():
    before, after = printed(GROWS)
    assert 150 <= after - before <= 260  # 200 MiB written


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the inherited high-water mark is Linux's")
def test_a_child_of_a_big_process_reports_its_own_peak():
    block = bytearray(400 * 1024 * 1024)  # the parent: as the flywheel's runner, holding models
    for i in range(0, len(block), 4096):  # resident only once written
        block[i] = 1
    own, inherited = printed(OWN_AND_INHERITED)
    assert inherited >= 400  # getrusage's ru_maxrss starts from the parent's high-water mark
    assert own < 300  # the child's own: an interpreter and a few imports
    del block
