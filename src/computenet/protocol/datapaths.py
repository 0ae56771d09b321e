"""Where a tenant's dataset files live at a center, and which names are reserved.

Every replica path is relative to the center agent's data root. A tenant's
files live in its own area, ``tenants/<tenant>/``, which the control plane
chooses: a path registered through the API must lie inside the caller's area,
so no tenant can name another tenant's file (nor the agent's own files).
Names starting with ``.`` are the agent's (``.cnet-index.json``,
``.cnet-staging``) and refused everywhere, as dataset ids and as path parts.
"""

from __future__ import annotations

from pathlib import PurePosixPath

TENANTS_DIR = "tenants"
"""The folder under a data root that holds one area per tenant."""


def tenant_area(tenant: str) -> str:
    """The area of `tenant` under a data root (``tenants/<tenant>``)."""
    return f"{TENANTS_DIR}/{tenant}"


def default_replica_path(tenant: str, dataset_id: str) -> str:
    """Where a replica of `dataset_id` of `tenant` goes unless the tenant names a sub-path."""
    return f"{tenant_area(tenant)}/{dataset_id}"


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a dataset id or a path part (reserved or unsafe), or None."""
    if not name:
        return "is empty"
    if name.startswith("."):
        return "starts with '.' (names starting with '.' are reserved for the agent)"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains a control character"
    return None


def replica_path_problem(path: str, tenant: str) -> str | None:
    """Why `path` is not a file path inside `tenant`'s area, or None when it is."""
    if "\\" in path:
        return "contains a backslash (use '/')"
    p = PurePosixPath(path)
    if p.is_absolute():
        return "is absolute (give a path relative to the data root)"
    parts = p.parts
    area = tuple(PurePosixPath(tenant_area(tenant)).parts)
    if parts[: len(area)] != area or len(parts) <= len(area):
        return f"is outside your tenant's area '{tenant_area(tenant)}/'"
    for part in parts:
        problem = name_problem(part)
        if problem is not None:
            return f"has a part that {problem}"
    return None
