import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300):
    """Run `python -m dnnbench ARGS` as a real subprocess; return CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.setdefault("COLUMNS", "200")
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "dnnbench", *args], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli
