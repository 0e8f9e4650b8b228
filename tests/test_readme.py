"""Every Python block of the README runs as a script (``python block.py``), as a user who copies it would run
it; and a script that calls the process pool without the ``__main__`` guard gets one error naming its line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.M | re.S)


def run_script(tmp_path: Path, code: str, timeout: float = 900) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "THEORYLAB_HOME": str(tmp_path / "store"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_python_block_runs_as_a_script(i, tmp_path):
    r = run_script(tmp_path, BLOCKS[i])
    assert r.returncode == 0, f"README python block {i + 1}:\n{BLOCKS[i]}\n--- stderr:\n{r.stderr[-3000:]}"


def test_a_script_without_the_main_guard_is_told_so(tmp_path):
    r = run_script(tmp_path, textwrap.dedent("""
        from theorylab.sweep import grid, run_sweep
        run_sweep(grid("modular", {"task.p": [5, 7]}), backend="local")
    """), timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "script.py:3 calls this at the top level of the script" in last and '__name__ == "__main__"' in last
    assert not (tmp_path / "store" / "runs").exists() or not any((tmp_path / "store" / "runs").iterdir())


def test_python_dash_m_theorylab_runs_the_pool(tmp_path):
    env = {**os.environ, "THEORYLAB_HOME": str(tmp_path / "store"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "theorylab", "sweep", "modular", "task.p=5,7", "train.steps=2",
                        "--workers", "2", "-q"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "2 runs (2 trained" in r.stdout


def test_a_guarded_script_and_the_default_backend_need_nothing(tmp_path):
    from theorylab.sweep.guard import unguarded_main_call

    assert unguarded_main_call() is None  # under pytest there is no script to import again
    r = run_script(tmp_path, textwrap.dedent("""
        from theorylab.sweep import grid, run_sweep
        from theorylab.sweep.guard import unguarded_main_call

        def main():
            assert unguarded_main_call() is None
            return run_sweep(grid("modular", {"task.p": [5], "train.steps": [2]}), backend="local", progress=False)

        if "__main__" == __name__:
            assert unguarded_main_call() is None
            print(main().status)
    """), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "finished" in r.stdout
