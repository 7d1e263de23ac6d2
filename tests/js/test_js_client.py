"""Runs the JS client's unit tests (node's built-in runner, no npm dependencies)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from paths import ROOT


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_unit_tests_pass() -> None:
    proc = subprocess.run(
        ["node", "--test", "tests/js/"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout
