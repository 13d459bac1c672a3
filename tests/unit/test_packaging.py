"""A regular (non-editable) build carries conf/, templates/ and sql/, and the built `gamify`
finds and validates its configuration without the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_built_package_ships_and_finds_its_configuration(tmp_path):
    lib = tmp_path / "lib"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build", "--build-base", str(tmp_path / "b"), "--build-lib", str(lib)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    for name in ("conf/base.yaml", "conf/quality.yaml", "conf/sources/cdr.yaml", "sql/README.md"):
        assert (lib / "jobs" / "_resources" / name).is_file(), name
    shipped = {p.name for p in (lib / "jobs" / "_resources" / "templates" / "missions").glob("*.yaml")}
    assert shipped == {p.name for p in (ROOT / "templates" / "missions").glob("*.yaml")}
    env = {k: v for k, v in os.environ.items() if k not in ("GAMIFY_CONF_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(lib)
    run = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "config", "validate", "--env", "test"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"ok: {lib / 'jobs' / '_resources' / 'conf'} (env test)")
