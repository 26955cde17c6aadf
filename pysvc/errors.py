"""One exception hierarchy for the package: everything pysvc raises on purpose is a PysvcError."""

from __future__ import annotations

from typing import Any


class PysvcError(Exception):
    """Base of every error pysvc raises on purpose."""


class StackError(PysvcError):
    """The local stack or a migration could not do what was asked; the message says how to fix it."""


class ConfigError(PysvcError):
    """A required setting is missing or malformed; the message names it."""


class SessionError(PysvcError):
    """`create_session_record` refused or failed. `code` is stable and safe to show to callers."""

    status = 500
    code = "SESSION_ERROR"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class ActiveSessionExists(SessionError):
    status = 409
    code = "ACTIVE_SESSION_EXISTS"

    def __init__(self, message: str, *, session_id: str, session_type: str, status: str) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.session_type = session_type
        self.session_status = status


class InvalidSessionRequest(SessionError):
    """The request can never succeed as sent (unknown plan, wrong amount, foreign intake …)."""

    status = 422
    code = "INVALID_REQUEST"


class InsufficientCredits(SessionError):
    status = 402
    code = "INSUFFICIENT_CREDITS"


class BackendUnavailable(SessionError):
    """PostgREST or the database could not be reached or failed: retrying may succeed."""

    status = 503
    code = "BACKEND_UNAVAILABLE"
