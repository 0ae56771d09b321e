"""Read job files into a validated `JobSpec`, with errors that name the field.

A job file is ComputeNet's own YAML or JSON, a SkyPilot task YAML or a Slurm batch
script, detected by content (`computenet.sdk.jobfiles`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic

from computenet.catalog.loader import pydantic_field_error
from computenet.errors import ValidationError
from computenet.model import JobSpec
from computenet.sdk.jobfiles import Conversion, convert_job_text


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


def job_from_text(
    text: str, *, where: str = "(file)", partition_map: Mapping[str, str] | None = None
) -> tuple[JobSpec, Conversion]:
    """A job file's text (any format `jobfiles` knows) as a validated spec, and how it mapped."""
    conversion = convert_job_text(text, where=where, partition_map=partition_map)
    return parse_job_spec(conversion.spec), conversion


def read_job_file(
    path: str | Path, *, partition_map: Mapping[str, str] | None = None
) -> tuple[JobSpec, Conversion]:
    """Read a job file from disk: the validated spec, and what its format could not carry."""
    p = Path(path)
    if not p.is_file():
        raise ValidationError(
            f"no such job file '{p}'", field="JOB", hint="give the path of a job YAML file"
        )
    try:
        text = p.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError("not a UTF-8 text file", field=p.name) from exc
    return job_from_text(text, where=p.name, partition_map=partition_map)


def load_job_file(path: str | Path, *, partition_map: Mapping[str, str] | None = None) -> JobSpec:
    """Read a job file from disk and validate it."""
    return read_job_file(path, partition_map=partition_map)[0]
