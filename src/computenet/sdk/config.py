"""Where the client finds the server: options, then CNET_URL/CNET_TOKEN, then the config file.

The config file is JSON at ``$CNET_CONFIG`` or ``~/.config/computenet/config.json``;
`cnet up` writes it so that later commands just work. A control plane of
several replicas is given as several URLs — ``--url URL1,URL2``,
``CNET_URL=URL1,URL2``, or ``"url": ["URL1", "URL2"]`` in the file — and the
client fails over between them (`computenet.protocol.failover`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from computenet.errors import ValidationError
from computenet.protocol.failover import parse_urls

DEFAULT_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class ClientConfig:
    """Resolved connection settings plus what `cnet up` remembers about its network."""

    url: str = DEFAULT_URL
    token: str | None = None
    # Every replica's URL, `url` (the first) included; tried in this order.
    urls: tuple[str, ...] = (DEFAULT_URL,)
    admin_token: str | None = None
    data_roots: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The config file: $CNET_CONFIG, else ~/.config/computenet/config.json."""
    env = os.environ if env is None else env
    if env.get("CNET_CONFIG"):
        return Path(env["CNET_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "computenet" / "config.json"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The config file's contents, or {} when there is none."""
    p = path or config_path()
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValidationError(
            f"cannot read the client config: {exc}",
            field=str(p),
            hint="fix or delete the file, or pass --url and --token",
        ) from exc
    if not isinstance(data, dict):
        raise ValidationError("must be a JSON object", field=str(p))
    return data


def save_config(data: Mapping[str, Any], path: Path | None = None) -> Path:
    """Write the config file (mode 0600, it holds tokens) and return its path."""
    p = path or config_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(dict(data), f, indent=2)
    os.replace(tmp, p)
    return p


def resolve(
    url: str | None = None,
    token: str | None = None,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> ClientConfig:
    """Settle url and token: explicit values, then CNET_URL/CNET_TOKEN, then the config file."""
    env = os.environ if env is None else env
    p = path or config_path(env)
    file = load_config(p)
    if url:
        urls = parse_urls(url, field="url")
    elif env.get("CNET_URL"):
        urls = parse_urls(env["CNET_URL"], field="CNET_URL")
    elif file.get("url"):
        urls = parse_urls(file["url"], field=f"{p}: url")
    else:
        urls = (DEFAULT_URL,)
    return ClientConfig(
        url=urls[0],
        urls=urls,
        token=token or env.get("CNET_TOKEN") or file.get("token"),
        admin_token=env.get("CNET_ADMIN_TOKEN") or file.get("admin_token"),
        data_roots=dict(file.get("data_roots") or {}),
        extra={k: v for k, v in file.items() if k not in {"url", "token", "admin_token"}},
    )
