"""The layer contract (GUIDE.md §1), checked by import-linter as part of the suite."""

import shutil
import subprocess
import sys
from pathlib import Path


def test_layers_only_import_downwards(root):
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "broken" in proc.stdout and "0 broken" in proc.stdout


def test_import_dnnbench_is_cheap():
    # the package root must not import torch: `dnnbench --help` and error paths stay fast
    code = "import sys, dnnbench; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
