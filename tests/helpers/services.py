"""Finding the real services that scripts/services.sh starts (Slurm, Ray, PostgreSQL).

`require_service(name)` returns the service's environment (``SLURM_CONF``,
``RAY_ADDRESS``, ``CNET_PG_URL``) when the service answers. When it does not,
the test FAILS under ``CI=true`` (CI must run every real-service test) and is
skipped elsewhere, with the command that starts it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
VARS = {"slurm": "SLURM_CONF", "ray": "RAY_ADDRESS", "postgres": "CNET_PG_URL"}


def in_ci() -> bool:
    """True when running under CI (``CI=true``): missing services fail instead of skipping."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def services_dir() -> Path:
    """Where scripts/services.sh keeps its state: ``$SERVICES_DIR`` or ./var/services."""
    return Path(os.environ.get("SERVICES_DIR") or REPO / "var" / "services")


def read_env_file(path: Path) -> dict[str, str]:
    """The ``export K=V`` lines of an env file written by scripts/services.sh."""
    out: dict[str, str] = {}
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            out[key] = value
    return out


def _answers(name: str, env: dict[str, str]) -> str | None:
    """None when the service answers, else why not."""
    value = env.get(VARS[name])
    if not value:
        return f"{VARS[name]} is not set and {services_dir() / 'env.sh'} does not name it"
    try:
        if name == "slurm":
            proc = subprocess.run(
                ["scontrol", "ping"],
                env={**os.environ, "SLURM_CONF": value},
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            if proc.returncode != 0 or "UP" not in proc.stdout:
                return f"scontrol ping: {(proc.stdout + proc.stderr).strip()}"
        elif name == "ray":
            httpx.get(f"{value.rstrip('/')}/api/version", timeout=10).raise_for_status()
        elif name == "postgres":
            import sqlalchemy as sa

            engine = sa.create_engine(value)
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("select 1"))
            finally:
                engine.dispose()
    except Exception as exc:
        return f"{name} does not answer: {exc}"
    return None


def require_service(name: str) -> dict[str, str]:
    """The environment of service `name` ("slurm", "ray", "postgres"); fail in CI, else skip."""
    env = read_env_file(services_dir() / "env.sh")
    if os.environ.get(VARS[name]):
        env[VARS[name]] = os.environ[VARS[name]]
    why = _answers(name, env)
    if why is not None:
        msg = f"{name} is not running ({why}); start it with: bash scripts/services.sh start {name}"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return env
