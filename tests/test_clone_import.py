"""A script run from the folder that holds the clone imports the clone folder first (Python looks in the script's
folder before the editable install): it gets one clear line instead of "module 'mnv3det' has no attribute 'load'"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_importing_the_clone_folder_says_what_happened_and_what_to_do(tmp_path):
    (tmp_path / "mnv3det").symlink_to(REPO, target_is_directory=True)  # a clone named mnv3det/ beside the script
    script = tmp_path / "try_it.py"
    script.write_text("import mnv3det\nprint(mnv3det.load)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: `import mnv3det` found the clone folder")
    assert f"({tmp_path})" in last and "Run it from another folder" in last


def test_the_package_itself_still_imports_from_inside_the_clone():
    done = subprocess.run([sys.executable, "-c", "import mnv3det; print(mnv3det.__file__)"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == REPO / "mnv3det" / "__init__.py"
