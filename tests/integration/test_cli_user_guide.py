"""Every `bash` and `python` block of docs/user-guide.md, run in order against `cnet up demo`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_cli_up import Up, up  # noqa: F401  (the running network)

pytestmark = [pytest.mark.integration, pytest.mark.own_db]

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def guide_blocks() -> list[tuple[str, str]]:
    """(language, code) of every runnable block, in order."""
    return [
        (m.group(1), m.group(2))
        for m in BLOCK.finditer(GUIDE.read_text("utf-8"))
        if m.group(1) in ("bash", "python")
    ]


def test_the_guide_has_runnable_examples() -> None:
    langs = [lang for lang, _ in guide_blocks()]
    assert langs.count("bash") >= 10 and "python" in langs


@pytest.mark.timeout(600)
def test_every_example_in_the_user_guide_works_when_pasted(up: Up, tmp_path: Path) -> None:  # noqa: F811
    env = dict(up.env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for i, (lang, code) in enumerate(guide_blocks()):
        if lang == "bash":
            argv = ["bash", "-e", "-o", "pipefail", "-c", code]
        else:
            script = tmp_path / f"block{i}.py"
            script.write_text(code)
            argv = [sys.executable, str(script)]
        r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, (
            f"block {i} ({lang}) failed:\n{code}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
        )
        assert "Traceback" not in r.stderr, r.stderr
        if '|| echo "exit status $?"' in code:
            assert "exit status 2" in r.stdout, r.stdout
