"""Compute identifiers (算力标识): one stable, hierarchical name for every center, pool,
dataset replica and job, defined here once.

An identifier is dotted, most general part first::

    <prefix>.<center>                      a center          cn.gba.shenzhen-1
    <prefix>.<center>.pool.<chip>          a chip pool       cn.gba.shenzhen-1.pool.H100
    <prefix>.<center>.dataset.<id>         a dataset replica cn.gba.shenzhen-1.dataset.corpus-v1
    <prefix>.job.<id>                      a job             cn.gba.job.j-0123456789ab

`<prefix>` names the control plane that owns the object: the network file's
`identifier` (e.g. ``cn.gba``), else the network's name in lower case. A job
is named by its plane, not by a center, because requeueing moves it between
centers and its identifier must not change. A region nests under its parent
when its prefix is the parent's prefix plus its own center id at the parent
(national ``cn``, region center ``gba`` → the region's prefix ``cn.gba``):
then the parent's name for the region, ``cn.gba``, is the start of every
identifier the region hands out, and the parent can route a deeper identifier
to the right region (docs/federation.md, "Identifiers").

The words ``pool``, ``dataset`` and ``job`` mark the kind; they may not be a
prefix part or a center id, so every identifier parses one way only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING

from computenet.errors import ValidationError

if TYPE_CHECKING:
    from computenet.model.network import Network


class Kind(StrEnum):
    """What an identifier names."""

    CENTER = "center"
    POOL = "pool"
    DATASET = "dataset"
    JOB = "job"


# The words that introduce a kind; never a prefix part or a center id.
RESERVED = frozenset({Kind.POOL.value, Kind.DATASET.value, Kind.JOB.value})

# A prefix part or a center id: the pattern of `Center.id` (lower case, digits, '-').
PART = re.compile(r"^[a-z0-9][a-z0-9\-]*$")
# A chip type and a job id: no dots, so they end the identifier unambiguously.
CHIP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
# A dataset id: the pattern of `Dataset.id` (dots allowed: it is always the last part).
DATASET_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")

MAX_PART = 64
MAX_PREFIX = 128
MAX_LENGTH = 400

EXAMPLE = "cn.gba.shenzhen-1.pool.H100"
_FORMS = (
    "PREFIX.CENTER, PREFIX.CENTER.pool.CHIP, PREFIX.CENTER.dataset.ID or PREFIX.job.ID,"
    f" e.g. {EXAMPLE}"
)


@dataclass(frozen=True)
class Identifier:
    """A parsed identifier. `center` is None for a job; `key` is None for a center.

    `str()` gives the text back: ``parse(str(i)) == i`` for every valid one.
    """

    prefix: str
    kind: Kind
    center: str | None = None
    key: str | None = None

    def __str__(self) -> str:
        if self.kind == Kind.JOB:
            return f"{self.prefix}.job.{self.key}"
        if self.kind == Kind.CENTER:
            return f"{self.prefix}.{self.center}"
        return f"{self.prefix}.{self.center}.{self.kind.value}.{self.key}"

    def under(self, prefix: str) -> bool:
        """True when the identifier was handed out by plane `prefix` or by a plane below it."""
        return self.prefix == prefix or self.prefix.startswith(prefix + ".")

    def next_level(self, prefix: str) -> str | None:
        """For an identifier below plane `prefix`, the part right after it: the center of
        `prefix` (a region) through which the owning plane is reached; None at `prefix`
        itself or outside it.
        """
        if self.prefix == prefix or not self.under(prefix):
            return None
        return self.prefix[len(prefix) + 1 :].split(".", 1)[0]


def _bad(message: str, field: str, hint: str = _FORMS) -> ValidationError:
    return ValidationError(message, field=field, hint=hint)


def _check_part(part: str, what: str, field: str) -> str:
    if not part:
        raise _bad(f"{what} is empty (two dots in a row, or a dot at an end)", field)
    if len(part) > MAX_PART:
        raise _bad(f"{what} '{part[:20]}…' is longer than {MAX_PART} characters", field)
    if part in RESERVED:
        raise _bad(
            f"{what} '{part}' is a reserved word",
            field,
            "pool, dataset and job mark the kind; rename the " + what.split()[0],
        )
    if not PART.match(part):
        raise _bad(
            f"{what} '{part}' may hold only lower-case letters, digits and '-'"
            " (starting with a letter or digit)",
            field,
            "e.g. cn.gba or shenzhen-1",
        )
    return part


def check_prefix(prefix: str, field: str = "identifier") -> str:
    """`prefix` if it is a valid network prefix (dotted parts like ``cn.gba``), else
    `ValidationError` naming `field`, the bad part and the fix."""
    if not isinstance(prefix, str) or not prefix:
        raise _bad("the network prefix is empty", field, "e.g. cn or cn.gba")
    if len(prefix) > MAX_PREFIX:
        raise _bad(f"the network prefix is longer than {MAX_PREFIX} characters", field)
    for part in prefix.split("."):
        _check_part(part, "prefix part", field)
    return prefix


@lru_cache(maxsize=64)
def default_prefix(network_name: str) -> str:
    """The prefix of a network without an `identifier`: its name in lower case, anything
    but letters, digits, '-' and '.' turned into '-' (``Demo Net`` → ``demo-net``)."""
    text = re.sub(r"[^a-z0-9.\-]+", "-", network_name.strip().lower())
    parts = [p.strip("-") for p in text.split(".")]
    parts = [p if p not in RESERVED else f"{p}-net" for p in parts if p]
    prefix = ".".join(parts)[:MAX_PREFIX].strip(".-") or "net"
    return check_prefix(prefix)


def network_prefix(network: Network) -> str:
    """The prefix of this control plane's identifiers (the network file's `identifier`,
    else `default_prefix` of its name)."""
    return network.identifier or default_prefix(network.name)


def check_network(network: Network) -> None:
    """Every center and pool of `network` can be named: `ValidationError` otherwise.

    Called by `Network`'s own validation, so a bad network file fails when loaded.
    """
    if network.identifier is not None:
        check_prefix(network.identifier, "identifier")
    for i, c in enumerate(network.centers):
        if c.id in RESERVED:
            raise _bad(
                f"center id '{c.id}' is a reserved word",
                f"centers[{i}].id",
                "pool, dataset and job mark an identifier's kind; rename the center",
            )
        for j, p in enumerate(c.pools):
            if not CHIP.match(p.chip):
                raise _bad(
                    f"chip '{p.chip}' cannot be part of an identifier",
                    f"centers[{i}].pools[{j}].chip",
                    "letters, digits, '_' and '-' only (no dots), e.g. Ascend-910B",
                )


def center_identifier(prefix: str, center: str) -> str:
    """The identifier of center `center` of plane `prefix`."""
    return str(Identifier(prefix, Kind.CENTER, center))


def pool_identifier(prefix: str, center: str, chip: str) -> str:
    """The identifier of the `chip` pool at `center`."""
    return str(Identifier(prefix, Kind.POOL, center, chip))


def dataset_identifier(prefix: str, center: str, dataset: str) -> str:
    """The identifier of `dataset`'s replica at `center`."""
    return str(Identifier(prefix, Kind.DATASET, center, dataset))


def job_identifier(prefix: str, job_id: str) -> str:
    """The identifier of job `job_id` of plane `prefix`."""
    return str(Identifier(prefix, Kind.JOB, None, job_id))


def parse(text: str, field: str = "identifier") -> Identifier:
    """Parse an identifier; `ValidationError` naming `field`, the part at fault and the fix.

    The first reserved word (``pool``, ``dataset``, ``job``) marks the kind:
    before ``job`` is the whole prefix; before ``pool`` and ``dataset`` the
    prefix and then the center; without one, the last part is the center.
    """
    if not isinstance(text, str) or not text:
        raise _bad("is empty", field)
    if len(text) > MAX_LENGTH:
        raise _bad(f"is longer than {MAX_LENGTH} characters", field)
    if text != text.strip() or any(ch.isspace() for ch in text):
        raise _bad("contains white space", field)
    parts = text.split(".")
    k = next((i for i, p in enumerate(parts) if p in RESERVED), None)
    if k is None:
        if len(parts) < 2:
            raise _bad(f"'{text}' has no network prefix before the center", field)
        prefix = check_prefix(".".join(parts[:-1]), field)
        return Identifier(prefix, Kind.CENTER, _check_part(parts[-1], "center id", field))
    kind = Kind(parts[k])
    key = ".".join(parts[k + 1 :])
    if not key:
        raise _bad(f"'{kind.value}' must be followed by an id", field)
    if kind == Kind.JOB:
        if k == 0:
            raise _bad("starts with 'job': the network prefix comes first", field)
        if not JOB_ID.match(key):
            raise _bad(f"job id '{key}' may hold only letters, digits, '_' and '-'", field)
        return Identifier(check_prefix(".".join(parts[:k]), field), kind, None, key)
    if k < 2:
        raise _bad(f"'{kind.value}' needs a network prefix and a center before it", field)
    center = _check_part(parts[k - 1], "center id", field)
    prefix = check_prefix(".".join(parts[: k - 1]), field)
    if kind == Kind.POOL and not CHIP.match(key):
        raise _bad(f"chip '{key}' may hold only letters, digits, '_' and '-'", field)
    if kind == Kind.DATASET and not DATASET_ID.match(key):
        raise _bad(f"dataset id '{key}' may hold only letters, digits, '_', '.' and '-'", field)
    return Identifier(prefix, kind, center, key)
