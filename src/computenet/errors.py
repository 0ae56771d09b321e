"""The one error tree of ComputeNet.

Every error a user can cause carries the field it is about and a hint for the
fix, so the API can answer 4xx with both and the CLI can print one line.
"""

from __future__ import annotations


class ComputeNetError(Exception):
    """Root of every error ComputeNet raises on purpose."""

    status_code = 500

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint

    def one_line(self) -> str:
        """The error as one readable line: field, reason and fix."""
        head = f"{self.field}: {self.message}" if self.field else self.message
        return f"{head} ({self.hint})" if self.hint else head


class ValidationError(ComputeNetError):
    """Input that does not fit the schema or the network (HTTP 422, CLI exit 2)."""

    status_code = 422


class NotFoundError(ComputeNetError):
    """A job, center, dataset or tenant that does not exist for the caller (HTTP 404)."""

    status_code = 404


class AuthError(ComputeNetError):
    """Missing or wrong credentials (HTTP 401)."""

    status_code = 401


class ForbiddenError(ComputeNetError):
    """Valid credentials that may not do this (HTTP 403)."""

    status_code = 403


class ConflictError(ComputeNetError):
    """The request clashes with the current state, e.g. cancelling a finished job (HTTP 409)."""

    status_code = 409


class IllegalTransition(ConflictError):
    """A job state change the state machine does not allow."""


class RateLimitedError(ComputeNetError):
    """Over a per-tenant limit (HTTP 429); `retry_after_s` says when to try again."""

    status_code = 429

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        hint: str | None = None,
        retry_after_s: float = 1.0,
    ) -> None:
        super().__init__(message, field=field, hint=hint)
        self.retry_after_s = retry_after_s


class BackendError(ComputeNetError):
    """A center's local scheduler (processes, Slurm, Ray, Kubernetes) failed a call."""

    status_code = 502
