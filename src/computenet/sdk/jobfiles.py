"""Job files users already have: SkyPilot task YAML and Slurm batch scripts, as a `JobSpec`.

Pure: no server, no network, no disk (the caller reads the file). One entry point,
`convert_job_text`, detects the format by content and returns the ComputeNet spec
with every field it could not map and why (`Conversion.unmapped`): nothing is
dropped silently. A ComputeNet job file passes through unchanged.

Both formats may carry ComputeNet's own settings in comment lines, invisible to
SkyPilot and Slurm::

    # cnet: hours=6 class=llm-train deadline=12h budget_cny=500 priority=3

See docs/user-guide.md, "Job files you already have".
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import yaml

from computenet.errors import ValidationError

Format = Literal["computenet", "skypilot", "slurm"]

# Network time is China Standard Time: a deadline written without a zone is read in it.
CST = timezone(timedelta(hours=8))

# Slurm partition → ComputeNet workload class. Matched case-insensitively; the first
# partition of a comma list found here wins. Replace with `partition_map=` (CLI:
# --partition-map FILE, or the CNET_PARTITION_MAP environment variable).
DEFAULT_PARTITION_MAP: Mapping[str, str] = {
    "gpu": "llm-train",
    "train": "llm-train",
    "training": "llm-train",
    "llm": "llm-train",
    "a100": "llm-train",
    "h100": "llm-train",
    "cv": "cv-train",
    "vision": "cv-train",
    "inference": "inference",
    "infer": "inference",
    "serve": "inference",
    "serving": "inference",
    "interactive": "inference",
    "debug": "inference",
    "cpu": "cpu-batch",
    "compute": "cpu-batch",
    "standard": "cpu-batch",
    "batch": "cpu-batch",
    "normal": "cpu-batch",
}

# Without a partition (or a `# cnet: class=`): a job on accelerators trains, one without runs
# on CPU nodes.
DEFAULT_GPU_CLASS = "llm-train"
DEFAULT_CPU_CLASS = "cpu-batch"
# The chip a Slurm job without GPUs asks for: whole CPU nodes, one per --nodes.
CPU_CHIP = "CPU-node"
# The chip whose hours `--time` counts when the script names no GPU type.
DEFAULT_GPU_REFERENCE = "A100"

# Names people write for catalog chips that no prefix rule finds.
_CHIP_ALIASES = {
    "910b": "Ascend-910B",
    "ascend": "Ascend-910B",
    "mlu370": "MLU370-X8",
    "dcu": "Hygon-DCU",
    "cpu": "CPU-node",
}
# What may follow a catalog chip's name in a variant: memory, form factor, interconnect.
_VARIANT_TAIL = re.compile(r"^(?:\d+g(?:b)?|sxm\d*|pcie|nvl(?:ink)?|mega|hgx|dgx)+$")


@dataclass(frozen=True)
class Unmapped:
    """A field of the user's file that has no place in the ComputeNet spec, and why."""

    field: str
    why: str


@dataclass
class Conversion:
    """What a job file became: the spec (as the job file's schema), its format, what was left."""

    format: Format
    spec: dict[str, Any]
    unmapped: list[Unmapped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """`{"spec", "unmapped", "notes", "format"}`, as `cnet spec show --json` prints it."""
        return {
            "spec": self.spec,
            "unmapped": [{"field": u.field, "why": u.why} for u in self.unmapped],
            "notes": list(self.notes),
            "format": self.format,
        }


def builtin_chip_names() -> list[str]:
    """The chip names of the built-in catalog."""
    from computenet.catalog import load_chips  # local: keeps importing this module cheap

    return list(load_chips())


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def match_chip(raw: str, chips: Iterable[str]) -> str | None:
    """The catalog chip `raw` names, case-insensitively and with variants; None if none.

    `a100`, `A100-80GB`, `a100_40gb_pcie` → `A100`; `H200-141GB` → `H200` (the longest
    catalog name that prefixes it wins, so `H200` never reads as `H20`).
    """
    names = list(chips)
    want = _norm(raw)
    if not want:
        return None
    by_norm = {_norm(n): n for n in names}
    if want in by_norm:
        return by_norm[want]
    alias = _CHIP_ALIASES.get(want)
    if alias in names:
        return alias
    best: str | None = None
    for key, name in by_norm.items():
        tail = want[len(key) :]
        longer = best is None or len(key) > len(_norm(best))
        if key and want.startswith(key) and _VARIANT_TAIL.match(tail) and longer:
            best = name
    return best


# ---------------------------------------------------------------------------------------
# Detection


_SBATCH = re.compile(r"^#SBATCH\b", re.MULTILINE)
_SKY_KEYS = frozenset(
    {
        "name",
        "workdir",
        "num_nodes",
        "resources",
        "envs",
        "secrets",
        "file_mounts",
        "setup",
        "run",
        "config",
        "service",
        "inputs",
        "outputs",
        "volumes",
        "event_callback",
    }
)
_SKY_ONLY = frozenset({"resources", "setup", "run", "num_nodes", "file_mounts", "workdir", "envs"})
_CNET_ONLY = frozenset({"class", "command", "work", "chips"})


def detect_format(text: str, parsed: Any = None) -> Format:
    """Which kind of job file `text` is, by its content (not its name)."""
    if _SBATCH.search(text):
        return "slurm"
    if isinstance(parsed, Mapping):
        keys = set(map(str, parsed))
        if keys & _CNET_ONLY:
            return "computenet"
        if keys & _SKY_ONLY:
            return "skypilot"
    return "computenet"


def _yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where} line {mark.line + 1}" if mark else where
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValidationError(
            f"malformed YAML: {problem}",
            field=at,
            hint="check indentation and 'key: value' syntax on that line",
        ) from exc


def convert_job_text(
    text: str,
    *,
    where: str = "(file)",
    partition_map: Mapping[str, str] | None = None,
    chips: Iterable[str] | None = None,
) -> Conversion:
    """Read a job file's text — ComputeNet, SkyPilot or Slurm, detected — into a spec.

    `where` names the file in errors; `chips` are the catalog's chip names (the
    built-in catalog by default). The spec is not validated here: `parse_job_spec`
    does that, so its errors name the ComputeNet field.
    """
    names = list(chips) if chips is not None else builtin_chip_names()
    if _SBATCH.search(text):
        return _Slurm(text, partition_map or DEFAULT_PARTITION_MAP, names).convert()
    parsed = _yaml(text, where)
    fmt = detect_format(text, parsed)
    if fmt == "skypilot":
        return _SkyPilot(text, parsed, names).convert()
    if isinstance(parsed, Mapping) and "spec" in parsed and "unmapped" in parsed:
        # The output of `cnet spec show --json` read back: its spec is the job.
        parsed = parsed["spec"]
    return Conversion("computenet", parsed)


# ---------------------------------------------------------------------------------------
# Shared: `# cnet:` directives, --time and deadlines


_CNET_LINE = re.compile(r"^\s*#\s*cnet:\s*(.*)$", re.IGNORECASE | re.MULTILINE)
_CNET_KEYS = (
    "hours",
    "cu_hours",
    "class",
    "deadline",
    "budget_cny",
    "priority",
    "name",
    "preemptible",
)
_YES = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def cnet_directives(text: str) -> dict[str, str]:
    """`# cnet: key=value ...` settings in a file's comments; unknown keys are errors."""
    out: dict[str, str] = {}
    for m in _CNET_LINE.finditer(text):
        try:
            words = shlex.split(m.group(1), comments=True)
        except ValueError as exc:
            raise ValidationError(
                f"'{m.group(0).strip()}' cannot be read: {exc}",
                field="# cnet:",
                hint="write # cnet: key=value key=value",
            ) from exc
        for word in words:
            key, eq, value = word.partition("=")
            if not eq or key not in _CNET_KEYS:
                raise ValidationError(
                    f"'{word}' is not a ComputeNet setting",
                    field="# cnet:",
                    hint="use key=value with a key among " + ", ".join(_CNET_KEYS),
                )
            out[key] = value
    return out


def _positive_float(value: str, where: str, fix: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = float("nan")
    if not x > 0 or x == float("inf"):
        raise ValidationError(f"'{value}' is not a positive number", field=where, hint=fix)
    return x


_TIME_FORMS = (
    (re.compile(r"^(\d+)$"), ("m",)),
    (re.compile(r"^(\d+):(\d+)$"), ("m", "s")),
    (re.compile(r"^(\d+):(\d+):(\d+)$"), ("h", "m", "s")),
    (re.compile(r"^(\d+)-(\d+)$"), ("d", "h")),
    (re.compile(r"^(\d+)-(\d+):(\d+)$"), ("d", "h", "m")),
    (re.compile(r"^(\d+)-(\d+):(\d+):(\d+)$"), ("d", "h", "m", "s")),
)
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def slurm_time_s(text: str) -> int:
    """Seconds in a Slurm time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS.

    Raises ValueError on anything else, on UNLIMITED/INFINITE and on zero (which
    Slurm reads as no limit: ComputeNet needs an estimate).
    """
    t = text.strip()
    for pattern, units in _TIME_FORMS:
        m = pattern.match(t)
        if m:
            seconds = sum(int(g) * _UNIT[u] for g, u in zip(m.groups(), units, strict=True))
            if seconds <= 0:
                raise ValueError(f"'{text}' is no time at all (Slurm reads 0 as no limit)")
            return seconds
    raise ValueError(f"'{text}' is not a Slurm time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM:SS)")


_NOW_PLUS = re.compile(
    r"^now(?:\+(\d+)(seconds?|minutes?|hours?|days?|weeks?|s|m|h|d|w)?)?$", re.IGNORECASE
)
_NOW_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def slurm_deadline(text: str, notes: list[str]) -> str:
    """A Slurm `--deadline` as a ComputeNet deadline: an ISO time or a duration like 90m."""
    t = text.strip()
    m = _NOW_PLUS.match(t)
    if m:
        n = int(m.group(1) or 0)
        unit = (m.group(2) or "s")[0].lower()
        seconds = n * _NOW_UNIT[unit]
        if seconds <= 0:
            raise ValueError(f"'{text}' is now: a deadline must be later")
        return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"
    try:
        at = datetime.fromisoformat(t)
    except ValueError as exc:
        raise ValueError(
            f"'{text}' is not a deadline ComputeNet reads (YYYY-MM-DD[THH:MM[:SS]] or now+N<unit>)"
        ) from exc
    if at.tzinfo is None:
        at = at.replace(tzinfo=CST)
        notes.append(f"--deadline {t} has no timezone: read in network time, CST (UTC+8)")
    return at.isoformat()


def _apply_cnet(spec: dict[str, Any], directives: Mapping[str, str], chip: str | None) -> None:
    """Put `# cnet:` settings into a spec; they win over what the file itself says."""
    fix = "write # cnet: hours=2 (hours on the requested chips)"
    if "cu_hours" in directives:
        spec["work"] = {
            "cu_hours": _positive_float(directives["cu_hours"], "# cnet: cu_hours", fix)
        }
    elif "hours" in directives:
        hours = _positive_float(directives["hours"], "# cnet: hours", fix)
        if chip is None:
            raise ValidationError(
                "hours need a chip to count them on",
                field="# cnet: hours",
                hint="name an accelerator, or give # cnet: cu_hours=N",
            )
        spec["work"] = {"reference_chip": chip, "reference_hours": hours}
    for key in ("class", "deadline", "name"):
        if key in directives:
            spec[key] = directives[key]
    if "budget_cny" in directives:
        spec["budget_cny"] = directives["budget_cny"]
    if "priority" in directives:
        try:
            spec["priority"] = int(directives["priority"])
        except ValueError as exc:
            raise ValidationError(
                f"'{directives['priority']}' is not a whole number",
                field="# cnet: priority",
                hint="give 0-10",
            ) from exc
    if "preemptible" in directives:
        # A job that resumes from $CNET_CHECKPOINT_DIR (docs/user-guide.md, "Preemptible jobs").
        word = directives["preemptible"].strip().lower()
        if word not in _YES:
            raise ValidationError(
                f"'{directives['preemptible']}' is not true or false",
                field="# cnet: preemptible",
                hint="write # cnet: preemptible=true for a job that resumes from its checkpoint",
            )
        spec["preemptible"] = _YES[word]


# ---------------------------------------------------------------------------------------
# Slurm


_SHORT = {
    "A": "account",
    "a": "array",
    "b": "begin",
    "c": "cpus-per-task",
    "C": "constraint",
    "d": "dependency",
    "D": "chdir",
    "e": "error",
    "G": "gpus",
    "i": "input",
    "J": "job-name",
    "L": "licenses",
    "M": "clusters",
    "m": "distribution",
    "n": "ntasks",
    "N": "nodes",
    "o": "output",
    "p": "partition",
    "q": "qos",
    "t": "time",
    "w": "nodelist",
    "x": "exclude",
    "F": "nodefile",
    "S": "core-spec",
    "B": "extra-node-info",
    "k": "no-kill",
}
# Options that take no value.
_FLAGS = frozenset(
    {
        "exclusive",
        "requeue",
        "no-requeue",
        "wait",
        "hold",
        "overcommit",
        "oversubscribe",
        "contiguous",
        "spread-job",
        "test-only",
        "parsable",
        "quiet",
        "verbose",
        "use-min-nodes",
        "no-kill",
        "reboot",
        "ignore-pbs",
        "get-user-env",
    }
)
_SHORT_FLAGS = {"W": "wait", "H": "hold", "O": "overcommit", "s": "oversubscribe", "Q": "quiet"}
_SHORT_FLAGS.update({"v": "verbose", "k": "no-kill"})

# Options mapped here that mean nothing without a value.
_NEEDS_VALUE = frozenset(
    {"nodes", "time", "gres", "gpus", "gpus-per-node", "gpus-per-task", "job-name"}
    | {"partition", "deadline"}
)

# Why each Slurm option we do not map has no place in a ComputeNet job.
_SLURM_WHY = {
    "account": "the tenant that pays is the one your token names",
    "qos": "ComputeNet has no QOS; give priority with # cnet: priority=N",
    "output": "ComputeNet keeps stdout and stderr together: cnet logs ID",
    "error": "ComputeNet keeps stdout and stderr together: cnet logs ID",
    "input": "a job reads no stdin",
    "mail-type": "ComputeNet sends no mail: follow the job with cnet status ID or submit --wait",
    "mail-user": "ComputeNet sends no mail: follow the job with cnet status ID or submit --wait",
    "array": "ComputeNet has no job arrays: submit one job per index",
    "dependency": "ComputeNet has no dependencies between jobs: submit the next one when this ends",
    "begin": "ComputeNet chooses the start (the cheapest hour that meets the deadline)",
    "mem": "ComputeNet allocates whole chips; host memory is the center's",
    "mem-per-cpu": "ComputeNet allocates whole chips; host memory is the center's",
    "mem-per-gpu": "give chip memory as chips.memory_gb in a ComputeNet job file",
    "cpus-per-task": "ComputeNet allocates whole chips, not CPU cores",
    "cpus-per-gpu": "ComputeNet allocates whole chips, not CPU cores",
    "ntasks": "ComputeNet allocates whole chips; the command starts its own processes"
    " ($CNET_CHIP_COUNT of them)",
    "ntasks-per-node": "ComputeNet allocates whole chips; the command starts its own processes"
    " ($CNET_CHIP_COUNT of them)",
    "ntasks-per-gpu": "ComputeNet allocates whole chips; the command starts its own processes",
    "exclusive": "the chips a job gets are its own already",
    "nodelist": "ComputeNet places jobs on centers, not named nodes",
    "exclude": "ComputeNet places jobs on centers, not named nodes",
    "chdir": "the command runs in a fresh directory at the center",
    "requeue": "a job whose center is lost is always run again elsewhere",
    "no-requeue": "a job whose center is lost is always run again elsewhere",
    "signal": "a cancelled job is stopped by its center",
    "nice": "give priority with # cnet: priority=N",
    "licenses": "ComputeNet has no licenses",
    "clusters": "ComputeNet chooses the center",
    "time-min": "the work estimate comes from --time",
    "open-mode": "cnet logs ID shows the output",
    "wait": "use cnet submit --wait",
}


def _slurm_options(text: str) -> tuple[list[tuple[str, str | None, int]], list[int]]:
    """(option, value, line) for each #SBATCH option Slurm reads; lines of ones it ignores.

    Slurm reads #SBATCH lines only before the first command of the script.
    """
    opts: list[tuple[str, str | None, int]] = []
    ignored: list[int] = []
    started = False
    for number, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        if not s.startswith("#"):
            started = True
            continue
        if not s.startswith("#SBATCH"):
            continue
        if started:
            ignored.append(number)
            continue
        try:
            words = shlex.split(s[len("#SBATCH") :], comments=True)
        except ValueError as exc:
            raise ValidationError(
                f"line {number} cannot be read: {exc}",
                field="#SBATCH",
                hint="close the quote on that line",
            ) from exc
        i = 0
        while i < len(words):
            w = words[i]
            i += 1
            if w.startswith("--"):
                name, eq, value = w[2:].partition("=")
                if eq:
                    opts.append((name, value, number))
                elif name in _FLAGS or i >= len(words) or words[i].startswith("-"):
                    opts.append((name, None, number))
                else:
                    opts.append((name, words[i], number))
                    i += 1
            elif w.startswith("-") and len(w) >= 2:
                letter = w[1]
                if letter in _SHORT_FLAGS and len(w) == 2:
                    opts.append((_SHORT_FLAGS[letter], None, number))
                elif len(w) > 2:
                    opts.append((_SHORT.get(letter, letter), w[2:].lstrip("="), number))
                elif i < len(words):
                    opts.append((_SHORT.get(letter, letter), words[i], number))
                    i += 1
                else:
                    opts.append((_SHORT.get(letter, letter), None, number))
            else:
                opts.append((w, None, number))
    return opts, ignored


class _Slurm:
    def __init__(self, text: str, partition_map: Mapping[str, str], chips: list[str]) -> None:
        self.text = text
        self.partition_map = {k.lower(): v for k, v in partition_map.items()}
        self.chips = chips
        self.unmapped: list[Unmapped] = []
        self.notes: list[str] = []

    def _chip(self, raw: str, where: str) -> str:
        chip = match_chip(raw, self.chips)
        if chip is None:
            raise ValidationError(
                f"'{raw}' is not a chip in the catalog",
                field=where,
                hint="name one of " + ", ".join(self.chips),
            )
        if raw != chip:
            self.notes.append(f"{where}: '{raw}' read as the catalog chip {chip}")
        return chip

    def _gpu_spec(self, value: str, where: str) -> tuple[str | None, int]:
        """'[type:]N' (or 'type') → (chip or None, N)."""
        parts = value.split(":")
        if len(parts) == 1 and not parts[0].isdigit():
            return self._chip(parts[0], where), 1
        count_s = parts[-1]
        if not count_s.isdigit() or int(count_s) < 1:
            raise ValidationError(
                f"'{value}' does not end in a count of GPUs",
                field=where,
                hint="write [type:]N, e.g. a100:4",
            )
        chip = self._chip(":".join(parts[:-1]), where) if len(parts) > 1 else None
        return chip, int(count_s)

    def convert(self) -> Conversion:
        opts, ignored = _slurm_options(self.text)
        for line in ignored:
            self.unmapped.append(
                Unmapped(
                    f"#SBATCH (line {line})",
                    "after the script's first command: Slurm ignores it too",
                )
            )
        spec: dict[str, Any] = {}
        nodes = 1
        per_node: tuple[str | None, int] | None = None
        total: tuple[str | None, int] | None = None
        per_task: int | None = None
        ntasks: int | None = None
        time_s: int | None = None
        partition: str | None = None
        constraint_chip: str | None = None
        env: dict[str, str] = {}
        for name, value, line in opts:
            where = f"#SBATCH --{name}"
            if value is None and name in _NEEDS_VALUE:
                raise ValidationError(
                    f"line {line} gives no value", field=where, hint=f"write --{name}=VALUE"
                )
            if name == "job-name":
                spec["name"] = value
            elif name == "nodes":
                assert value is not None
                lo, dash, hi = value.partition("-")
                if not lo.isdigit() or int(lo) < 1 or (dash and not hi.isdigit()):
                    raise ValidationError(
                        f"'{value}' is not a node count", field=where, hint="write --nodes=N"
                    )
                nodes = int(lo)
                if dash:
                    self.unmapped.append(
                        Unmapped(f"{where} (max {hi})", f"ComputeNet takes the minimum, {lo}")
                    )
            elif name == "gres":
                assert value is not None
                for item in value.split(","):
                    if item == "gpu" or item.startswith("gpu:"):
                        per_node = self._gpu_spec(item[4:] or "1", where)
                    else:
                        self.unmapped.append(
                            Unmapped(f"{where}={item}", "ComputeNet knows GPU gres only")
                        )
            elif name in ("gpus", "gpus-per-node", "gpus-per-task"):
                assert value is not None
                got = self._gpu_spec(value, where)
                if name == "gpus":
                    total = got
                elif name == "gpus-per-node":
                    per_node = got
                else:
                    per_node = (got[0], per_node[1] if per_node else 0)
                    per_task = got[1]
            elif name == "time":
                assert value is not None
                try:
                    time_s = slurm_time_s(value)
                except ValueError as exc:
                    raise ValidationError(
                        str(exc), field=where, hint="write --time=HH:MM:SS (its run time)"
                    ) from exc
            elif name == "deadline":
                assert value is not None
                try:
                    spec["deadline"] = slurm_deadline(value, self.notes)
                except ValueError as exc:
                    raise ValidationError(
                        str(exc), field=where, hint="write --deadline=2026-12-01T18:00"
                    ) from exc
            elif name == "partition":
                partition = value
            elif name == "constraint" and value and match_chip(value, self.chips):
                constraint_chip = self._chip(value, where)
            elif name == "export" and not value:
                self.unmapped.append(Unmapped(where, "gives no variables: write NAME=value"))
            elif name == "export":
                for item in (value or "").split(","):
                    key, eq, val = item.partition("=")
                    if eq and key:
                        env[key] = val
                    elif item:
                        self.unmapped.append(
                            Unmapped(
                                f"{where}={item}",
                                "ComputeNet does not pass your shell's environment:"
                                " give NAME=value",
                            )
                        )
            elif name == "ntasks" and value and value.isdigit():
                ntasks = int(value)
                self.unmapped.append(Unmapped(f"{where}={value}", _SLURM_WHY["ntasks"]))
            else:
                shown = f"{where}={value}" if value is not None else where
                why = _SLURM_WHY.get(name, "no ComputeNet equivalent")
                self.unmapped.append(Unmapped(shown, why))
        if "name" not in spec:
            self.notes.append("no --job-name: the job is named 'job'")

        chip: str | None
        if total is not None:
            chip, count = total
            if per_node is not None:
                self.unmapped.append(
                    Unmapped(
                        "#SBATCH --gres/--gpus-per-node/--gpus-per-task",
                        "--gpus gives the job's GPUs in all and wins, as one count is asked",
                    )
                )
        elif per_node is not None:
            chip = per_node[0]
            if per_task is not None:
                tasks = ntasks if ntasks is not None else nodes
                count = per_task * tasks
            else:
                count = per_node[1] * nodes
        else:
            chip, count = None, 0
        chip = chip or constraint_chip
        directives = cnet_directives(self.text)
        if count == 0:
            # No GPUs: whole CPU nodes.
            if constraint_chip is not None:
                self.unmapped.append(
                    Unmapped(
                        f"#SBATCH --constraint={constraint_chip}",
                        "names a chip, but the script asks for no GPUs: add --gres=gpu:N",
                    )
                )
            chip, count = (CPU_CHIP if CPU_CHIP in self.chips else chip), nodes
            spec["chips"] = {"count": count, "stack": "cpu"}
            default_class = DEFAULT_CPU_CLASS
        else:
            spec["chips"] = {"count": count}
            if chip is not None:
                spec["chips"]["types"] = [chip]
            else:
                spec["chips"]["stack"] = "cuda"
                self.notes.append(
                    f"no GPU type named: any CUDA chip; --time counted on {DEFAULT_GPU_REFERENCE}"
                )
            default_class = DEFAULT_GPU_CLASS
        work_chip = chip or DEFAULT_GPU_REFERENCE
        if time_s is not None:
            spec["work"] = {"reference_chip": work_chip, "reference_hours": time_s / 3600}
            self.notes.append(
                f"--time is read as the run time on {count}× {work_chip}: a limit, so the"
                " estimate (and the quote) is at most what it costs"
            )
        spec["class"] = self._class(partition, default_class)
        spec["command"] = self.text
        if env:
            spec["env"] = env
        if re.search(r"^\s*srun\b", self.text, re.MULTILINE):
            self.notes.append("the script calls srun: it runs only at a Slurm center")
        _apply_cnet(spec, directives, work_chip)
        if "work" not in spec:
            raise ValidationError(
                "the script gives no time limit, so its work is unknown",
                field="#SBATCH --time",
                hint="add #SBATCH --time=HH:MM:SS (its run time) or # cnet: hours=H",
            )
        return Conversion("slurm", spec, self.unmapped, self.notes)

    def _class(self, partition: str | None, default: str) -> str:
        if partition is None:
            self.notes.append(f"no --partition: class {default}")
            return default
        for p in partition.split(","):
            cls = self.partition_map.get(p.strip().lower())
            if cls is not None:
                return cls
        self.unmapped.append(
            Unmapped(
                f"#SBATCH --partition={partition}",
                f"not in the partition map: class {default} taken (give --partition-map"
                " FILE, or # cnet: class=NAME)",
            )
        )
        return default


# ---------------------------------------------------------------------------------------
# SkyPilot


_SKY_RESOURCE_WHY = {
    "cloud": "ComputeNet chooses the center",
    "infra": "ComputeNet chooses the center",
    "region": "ComputeNet chooses the center",
    "zone": "ComputeNet chooses the center",
    "instance_type": "ComputeNet allocates chips, not instances",
    "cpus": "ComputeNet allocates whole chips, not CPU cores",
    "memory": "host memory is the center's (chip memory: chips.memory_gb)",
    "disk_size": "the job's directory is the center's",
    "disk_tier": "the job's directory is the center's",
    "use_spot": "ComputeNet has no spot capacity; a job whose center is lost runs again",
    "spot_recovery": "a job whose center is lost is always run again elsewhere",
    "job_recovery": "a job whose center is lost is always run again elsewhere",
    "image_id": "the command runs in the center's environment",
    "ports": "ComputeNet exposes no ports",
    "labels": "ComputeNet has no labels",
    "accelerator_args": "no ComputeNet equivalent",
    "network_tier": "ComputeNet chooses the center",
    "autostop": "a job ends when its command does",
}
_SKY_TOP_WHY = {
    "config": "SkyPilot's own settings",
    "service": "ComputeNet runs batch jobs, not services",
    "secrets": "",
    "outputs": "ComputeNet does not upload outputs: write them where the command can reach",
    "volumes": "the center's storage is its own",
    "event_callback": "no ComputeNet equivalent",
}


class _SkyPilot:
    def __init__(self, text: str, raw: Mapping[str, Any], chips: list[str]) -> None:
        self.text = text
        self.raw = raw
        self.chips = chips
        self.unmapped: list[Unmapped] = []
        self.notes: list[str] = []

    def _accelerators(self, value: Any, where: str) -> list[tuple[str, int, str]]:
        """'A100:8', {A100: 8, H100: 8}, [A100:8, H100:8] → [(raw name, count, where), ...]."""
        items: list[tuple[str, int, str]] = []
        if isinstance(value, str):
            for part in value.strip().strip("{}").split(","):
                name, _, n = part.strip().partition(":")
                items.append((name.strip(), self._count(n.strip() or "1", where), where))
        elif isinstance(value, Mapping):
            # YAML reads {A100:8, H100:8} as keys 'A100:8' with no value.
            for name, n in value.items():
                if n is None:
                    items.extend(self._accelerators(str(name), where))
                else:
                    items.append((str(name), self._count(str(n), where), where))
        elif isinstance(value, list | tuple | set):
            for v in value:
                items.extend(self._accelerators(v, where))
        else:
            raise ValidationError(
                f"'{value}' is not an accelerator request",
                field=where,
                hint="write A100:8, a list [A100:8, H100:8] or a mapping {A100: 8}",
            )
        return items

    def _count(self, n: str, where: str) -> int:
        try:
            x = float(n)
        except ValueError:
            x = 0.0
        if x < 1 or x != int(x):
            raise ValidationError(
                f"'{n}' is not a whole count of accelerators",
                field=where,
                hint="ComputeNet allocates whole chips: write e.g. A100:1",
            )
        return int(x)

    def _resources(self) -> tuple[list[tuple[str, int, str]], str]:
        res = self.raw.get("resources")
        if res is None:
            return [], "resources"
        if not isinstance(res, Mapping):
            raise ValidationError(
                "must be a mapping",
                field="resources",
                hint="write resources: {accelerators: A100:8}",
            )
        wanted: list[tuple[str, int, str]] = []
        where = "resources.accelerators"
        for key, value in res.items():
            if key == "accelerators":
                wanted.extend(self._accelerators(value, where))
            elif key in ("any_of", "ordered"):
                if not isinstance(value, list):
                    raise ValidationError(
                        "must be a list of resource mappings",
                        field=f"resources.{key}",
                        hint="write - accelerators: A100:8 for each choice",
                    )
                for i, choice in enumerate(value):
                    sub = f"resources.{key}[{i}]"
                    if not isinstance(choice, Mapping):
                        raise ValidationError(
                            "must be a mapping", field=sub, hint="write accelerators: A100:8"
                        )
                    for k, v in choice.items():
                        if k == "accelerators":
                            wanted.extend(self._accelerators(v, f"{sub}.accelerators"))
                        else:
                            self.unmapped.append(
                                Unmapped(f"{sub}.{k}", _SKY_RESOURCE_WHY.get(k, "no equivalent"))
                            )
                if key == "ordered":
                    self.notes.append(
                        "resources.ordered: every choice is allowed; the scheduler picks by cost"
                        " and deadline, not by their order"
                    )
            else:
                why = _SKY_RESOURCE_WHY.get(key, "no ComputeNet equivalent")
                self.unmapped.append(Unmapped(f"resources.{key}={value}", why))
        return wanted, where

    def convert(self) -> Conversion:
        raw = self.raw
        spec: dict[str, Any] = {}
        if "name" in raw and raw["name"] is not None:
            spec["name"] = str(raw["name"])
        nodes = raw.get("num_nodes", 1)
        if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
            raise ValidationError(
                f"'{nodes}' is not a node count", field="num_nodes", hint="write num_nodes: 2"
            )
        wanted, where = self._resources()
        chip: str | None = None
        count = 0
        if wanted:
            known = [(match_chip(n, self.chips), n, c, w) for n, c, w in wanted]
            usable = [k for k in known if k[0] is not None]
            if not usable:
                raise ValidationError(
                    "'" + "', '".join(n for n, _, _ in wanted) + "': no chip in the catalog",
                    field=where,
                    hint="name one of " + ", ".join(self.chips),
                )
            per_node = usable[0][2]
            types: list[str] = []
            for m, n, c, at in known:
                if m is None:
                    self.unmapped.append(Unmapped(f"{at}={n}:{c}", "not a chip in the catalog"))
                elif c != per_node:
                    self.unmapped.append(
                        Unmapped(
                            f"{at}={n}:{c}",
                            f"ComputeNet asks for one chip count; {per_node} taken from the first",
                        )
                    )
                else:
                    if n != m:
                        self.notes.append(f"{at}: '{n}' read as the catalog chip {m}")
                    if m not in types:
                        types.append(m)
            chip = types[0]
            count = per_node * nodes
            spec["chips"] = {"count": count, "types": types}
            if nodes > 1:
                self.notes.append(f"num_nodes {nodes} × {per_node} per node = {count} chips")
        else:
            spec["chips"] = {"count": nodes, "stack": "cpu"}
            count = nodes
            chip = CPU_CHIP if CPU_CHIP in self.chips else None
        spec["class"] = DEFAULT_GPU_CLASS if wanted else DEFAULT_CPU_CLASS
        spec["command"] = self._command()
        env = self._env("envs")
        secrets = self._env("secrets")
        if secrets:
            self.notes.append("secrets are passed as environment variables, like envs")
        if env or secrets:
            spec["env"] = {**env, **secrets}
        inputs = self._inputs()
        if inputs:
            spec["inputs"] = inputs
        for key in raw:
            if key not in _SKY_KEYS:
                self.unmapped.append(Unmapped(str(key), "not a SkyPilot task field"))
            elif _SKY_TOP_WHY.get(key):
                self.unmapped.append(Unmapped(str(key), _SKY_TOP_WHY[key]))
            elif key == "inputs":
                self.unmapped.append(Unmapped("inputs", "SkyPilot's input size estimate"))
        directives = cnet_directives(self.text)
        if "class" not in directives:
            self.notes.append(f"class {spec['class']} (set it with # cnet: class=NAME)")
        _apply_cnet(spec, directives, chip)
        if "work" not in spec:
            raise ValidationError(
                "a SkyPilot task does not say how long it runs",
                field="work",
                hint="add a comment line # cnet: hours=H (hours on the requested chips)",
            )
        return Conversion("skypilot", spec, self.unmapped, self.notes)

    def _command(self) -> str:
        setup = self.raw.get("setup")
        run = self.raw.get("run")
        for key, v in (("setup", setup), ("run", run)):
            if v is not None and not isinstance(v, str):
                raise ValidationError(
                    "must be text (a shell script)", field=key, hint=f"write {key}: |"
                )
        if not run:
            raise ValidationError(
                "the task has nothing to run", field="run", hint="add run: | with its commands"
            )
        if not setup:
            return str(run)
        # SkyPilot runs setup, then run, as separate processes; run only if setup succeeded.
        return f"(\n{str(setup).rstrip()}\n) || exit $?\n{run}"

    def _env(self, key: str) -> dict[str, str]:
        raw = self.raw.get(key)
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise ValidationError(
                "must be a mapping", field=key, hint=f"write {key}: {{NAME: value}}"
            )
        out: dict[str, str] = {}
        for name, value in raw.items():
            if value is None:
                self.unmapped.append(
                    Unmapped(f"{key}.{name}", "no value (SkyPilot takes it from --env at launch)")
                )
            else:
                out[str(name)] = str(value).lower() if isinstance(value, bool) else str(value)
        return out

    def _inputs(self) -> list[str]:
        inputs: list[str] = []
        mounts = self.raw.get("file_mounts") or {}
        if not isinstance(mounts, Mapping):
            raise ValidationError(
                "must be a mapping",
                field="file_mounts",
                hint="write file_mounts: {/data: cnet://ID}",
            )
        sources: list[tuple[str, Any]] = [(f"file_mounts.{k}", v) for k, v in mounts.items()]
        if self.raw.get("workdir") is not None:
            sources.insert(0, ("workdir", self.raw["workdir"]))
        for where, value in sources:
            src = value.get("source") if isinstance(value, Mapping) else value
            if isinstance(src, str) and src.startswith("cnet://") and len(src) > len("cnet://"):
                ds = src[len("cnet://") :].strip("/")
                if ds not in inputs:
                    inputs.append(ds)
                self.notes.append(
                    f"{where}: dataset {ds} is an input, at $CNET_INPUT_"
                    + re.sub(r"[^A-Z0-9]", "_", ds.upper())
                    + " (not at the mount path)"
                )
            else:
                self.unmapped.append(
                    Unmapped(
                        f"{where}={src}",
                        "not a registered dataset: register it with cnet datasets add and"
                        " name it cnet://ID",
                    )
                )
        return inputs
