"""Read job files (YAML or JSON) into a validated `JobSpec`, with errors that name the field."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic
import yaml

from computenet.catalog.loader import pydantic_field_error
from computenet.errors import ValidationError
from computenet.model import JobSpec


def parse_job_spec(raw: Any) -> JobSpec:
    """Validate a parsed job file (a mapping) into a `JobSpec`; errors name the field."""
    if isinstance(raw, JobSpec):
        return raw
    if not isinstance(raw, Mapping):
        raise ValidationError(
            "a job file must be a YAML mapping (name:, class:, command:, work: ...)",
            field="(file)",
            hint="see docs/user-guide.md, 'The job file'",
        )
    try:
        return JobSpec.model_validate(dict(raw))
    except pydantic.ValidationError as exc:
        err = pydantic_field_error(exc)
        if err.field and err.field.endswith("workload_class"):
            err.field = err.field.removesuffix("workload_class") + "class"
        err.hint = "fix this field in the job file and try again"
        raise err from exc


def load_job_file(path: str | Path) -> JobSpec:
    """Read a job file from disk and validate it."""
    p = Path(path)
    if not p.is_file():
        raise ValidationError(
            f"no such job file '{p}'", field="JOB", hint="give the path of a job YAML file"
        )
    try:
        raw = yaml.safe_load(p.read_text("utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p.name} line {mark.line + 1}" if mark else p.name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValidationError(
            f"malformed YAML: {problem}",
            field=where,
            hint="check indentation and 'key: value' syntax on that line",
        ) from exc
    except UnicodeDecodeError as exc:
        raise ValidationError("not a UTF-8 text file", field=p.name) from exc
    return parse_job_spec(raw)
