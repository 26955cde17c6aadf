"""Every error pysvc raises on purpose: a class with its HTTP status and stable code.

The API renders any `ApiError` as `{"error": message, "code": code, ...extra}` with `status` (one
handler, `pysvc.api`). Codes chosen by SQL (`private.raise_api_error`) become classes through
`SQL_ERRORS`, keyed by code; the status PostgREST answered is carried on the instance, and a test
checks that it is the class's status for every code the SQL can raise.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PysvcError(Exception):
    """Base of every error pysvc raises on purpose."""


class StackError(PysvcError):
    """The local stack or a migration could not do what was asked; the message says how to fix it."""


class ConfigError(PysvcError):
    """A required setting is missing or malformed; the message names it."""


class ApiError(PysvcError):
    """An error with an HTTP answer. Subclasses fix `status`, `code` and a default message."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL"
    message: ClassVar[str] = "internal error"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str | None = None, *, status: int | None = None, **extra: Any) -> None:
        self.detail = message or self.message
        self.http_status = status or self.status
        self.extra = extra
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        return {"error": self.detail, "code": self.code, **self.extra}


class UnknownSqlError(ApiError):
    """A code the SQL raised that no class here names: its status and code are kept as they came."""

    def __init__(self, code: str, message: str | None, status: int, **extra: Any) -> None:
        super().__init__(message, status=status, **extra)
        self.sql_code = code

    def body(self) -> dict[str, Any]:
        return {**super().body(), "code": self.sql_code}


# --- 400 / 401 / 403 / 404 / 413 ----------------------------------------------------------------

class BadWebhook(ApiError):
    status, code, message = 400, "BAD_WEBHOOK", "not a valid Stripe event"


class MissingSignature(BadWebhook):
    code, message = "MISSING_SIGNATURE", "missing Stripe-Signature header"


class BadSignature(BadWebhook):
    code, message = "BAD_SIGNATURE", "Stripe signature verification failed"


class BadPayload(BadWebhook):
    code, message = "BAD_PAYLOAD", "body is not a Stripe event"


class Unauthenticated(ApiError):
    status, code, message = 401, "UNAUTHENTICATED", "Authorization: Bearer <Supabase access token> is required"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class AuthUnavailable(ApiError):
    """The project's JWKS could not be fetched: our outage, not the caller's fault."""

    status, code, message = 503, "AUTH_UNAVAILABLE", "the project's signing keys cannot be fetched; try again"


class Forbidden(ApiError):
    status, code, message = 403, "FORBIDDEN", "not allowed"


class UnknownUser(Forbidden):
    code, message = "UNKNOWN_USER", "this token's user does not exist"


class NotAMechanic(Forbidden):
    code, message = "NOT_A_MECHANIC", "only mechanics may do this"


class MechanicInactive(Forbidden):
    code, message = "MECHANIC_INACTIVE", "this mechanic is not active"


class NotEligible(Forbidden):
    code, message = "NOT_ELIGIBLE", "this session's routing does not offer it to this mechanic"


class NotAssignedMechanic(Forbidden):
    code, message = "NOT_ASSIGNED_MECHANIC", "only the session's assigned mechanic may do this"


class NotPreferredMechanic(Forbidden):
    code, message = "NOT_PREFERRED_MECHANIC", "only the mechanic this offer names may decline it"


class NotFound(ApiError):
    status, code, message = 404, "NOT_FOUND", "not found"


class IntakeNotFound(NotFound):
    code, message = "INTAKE_NOT_FOUND", "no such intake for this customer"


class NoActiveSession(NotFound):
    code, message = "NO_ACTIVE_SESSION", "no active session"


class CheckoutNotFound(NotFound):
    code, message = "CHECKOUT_NOT_FOUND", "Stripe has no such checkout"


class PaymentNotFound(NotFound):
    code, message = "PAYMENT_NOT_FOUND", "this service opened no such Checkout"


class SessionNotFound(NotFound):
    code, message = "SESSION_NOT_FOUND", "no such session"


class AssignmentNotFound(NotFound):
    code, message = "ASSIGNMENT_NOT_FOUND", "no such assignment"


class OutboxRequestNotFound(NotFound):
    code, message = "REQUEST_NOT_FOUND", "no such Stripe request in the outbox"


class PayloadTooLarge(ApiError):
    status, code, message = 413, "PAYLOAD_TOO_LARGE", "request body too large"


# --- 402 / 409 ----------------------------------------------------------------------------------

class InsufficientCredits(ApiError):
    status, code, message = 402, "INSUFFICIENT_CREDITS", "not enough credits"


class Conflict(ApiError):
    status, code, message = 409, "CONFLICT", "conflicts with the current state"


class ActiveSessionExists(Conflict):
    code, message = "ACTIVE_SESSION_EXISTS", "You already have an active session"

    @classmethod
    def naming(cls, session_id: object, session_type: str, session_status: str) -> ActiveSessionExists:
        return cls(activeSessionId=str(session_id), activeSessionType=session_type,
                   activeSessionStatus=session_status)

    @property
    def session_id(self) -> str:
        return str(self.extra.get("activeSessionId", ""))


class SessionConflict(Conflict):
    code, message = "SESSION_CONFLICT", "a concurrent request already created this session"


class IntakeAlreadyUsed(Conflict):
    code, message = "INTAKE_ALREADY_USED", "this intake already has a session"


class AssignmentTaken(Conflict):
    code, message = "ASSIGNMENT_TAKEN", "another mechanic accepted this session first"


class AssignmentClosed(Conflict):
    code, message = "ASSIGNMENT_CLOSED", "this assignment is no longer open"


class InvalidTransition(Conflict):
    code, message = "INVALID_TRANSITION", "the session is not in a state that allows this"


class SessionNotCancellable(Conflict):
    code, message = "SESSION_NOT_CANCELLABLE", "a session can only be cancelled before it starts"


class AssignmentAlreadyDeclined(Conflict):
    code, message = "ASSIGNMENT_ALREADY_DECLINED", "this offer was already declined"


class WaiverNotSigned(Conflict):
    code, message = "WAIVER_NOT_SIGNED", "the customer has not signed the waiver yet"


class PaymentProcessing(Conflict):
    code, message = "PAYMENT_PROCESSING", "this intake's payment is being processed by the bank"


class PaymentInUse(Conflict):
    code, message = "PAYMENT_IN_USE", "this payment bought a session: cancel the session instead"


class PaymentRefunded(Conflict):
    """A paid checkout that could not become a session (or was refunded since): its money goes back."""

    code, message = "PAYMENT_REFUNDED", "this payment could not be used and was refunded"


class NothingToSend(Conflict):
    code, message = "NOTHING_TO_SEND", "nothing to send to Stripe for this payment"


class CheckoutInProgress(Conflict):
    """Another click's Checkout request is still with Stripe: the same request again shortly gets it."""

    code, message = "CHECKOUT_IN_PROGRESS", "your checkout is being opened, try again in a moment"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "2"}


class CheckoutPaidForOtherIntake(Conflict):
    code, message = "STRIPE_SESSION_MISMATCH", "this checkout already paid for another intake"


# --- 422: the request can never succeed as sent -------------------------------------------------

class InvalidRequest(ApiError):
    status, code, message = 422, "INVALID_REQUEST", "invalid request"


class MissingField(InvalidRequest):
    code, message = "MISSING_FIELD", "a required field is missing"


class InvalidPaymentMethod(InvalidRequest):
    code, message = "INVALID_PAYMENT_METHOD", "payment_method must be free, stripe or credits"


class InvalidRoutingType(InvalidRequest):
    code, message = "INVALID_ROUTING_TYPE", "unknown routing_type"


class InvalidType(InvalidRequest):
    code, message = "INVALID_TYPE", "type must be chat, video or diagnostic"


class InvalidEmail(InvalidRequest):
    code, message = "INVALID_EMAIL", "customer_email is not an email address"


class UnknownPlan(NotFound):
    code, message = "UNKNOWN_PLAN", "this plan is not offered"


class TypePlanMismatch(InvalidRequest):
    code, message = "TYPE_PLAN_MISMATCH", "the session type does not match the plan"


class PaymentMethodMismatch(InvalidRequest):
    code, message = "PAYMENT_METHOD_MISMATCH", "the plan cannot be paid this way"


class InvalidStripeSession(InvalidRequest):
    code, message = "INVALID_STRIPE_SESSION", "a stripe payment needs the Checkout Session id"


class AmountMismatch(InvalidRequest):
    code, message = "AMOUNT_MISMATCH", "the amount paid is not the plan's price"


class IntakePlanMismatch(InvalidRequest):
    code, message = "INTAKE_PLAN_MISMATCH", "the intake is for another plan"


class InvalidArgument(InvalidRequest):
    code, message = "INVALID_ARGUMENT", "an argument is out of range"


class InvalidKind(InvalidRequest):
    code, message = "INVALID_KIND", "unknown Stripe request kind"


class InvalidOutcome(InvalidRequest):
    code, message = "INVALID_OUTCOME", "outcome must be sent, failed or retry"


class InvalidIntake(InvalidRequest):
    code, message = "INVALID_INTAKE", "the intake was refused"


class MechanicNotFound(NotFound):
    code, message = "MECHANIC_NOT_FOUND", "the preferred mechanic does not exist or is not active"


class InvalidParams(InvalidRequest):
    code, message = "INVALID_PARAMS", "invalid parameters"


class InvalidRefund(InvalidRequest):
    code, message = "INVALID_REFUND", "not a Stripe refund"


class CheckoutInvalid(InvalidRequest):
    code, message = "CHECKOUT_INVALID", "this checkout cannot be fulfilled"


# --- 5xx: ours, never the caller's --------------------------------------------------------------

class StripeRefused(ApiError):
    """Stripe answered 4xx to a request of ours: retrying the same request will not help."""

    status, code, message = 502, "STRIPE_REFUSED", "Stripe refused the request"


class StripeBusy(ApiError):
    """Stripe is still working on a request with this idempotency key (409 idempotency_key_in_use)."""

    status, code, message = 503, "STRIPE_BUSY", "Stripe is still processing this request, try again"


class BackendUnavailable(ApiError):
    """PostgREST, the database or Stripe could not be reached or failed: retrying may succeed."""

    status, code, message = 503, "BACKEND_UNAVAILABLE", "temporarily unavailable, try again"


class StripeNotConfigured(ApiError):
    status, code, message = 503, "STRIPE_NOT_CONFIGURED", "Stripe is not configured: paid plans are unavailable"


class Misconfigured(ApiError):
    """PostgREST refused us (bad key, missing grant or function): ours to fix, never the caller's."""

    status, code, message = 500, "SESSION_BACKEND_ERROR", "the service is misconfigured"


# Codes SQL functions raise, by code. tests/test_errors.py raises each through the real RPC.
SQL_ERRORS: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        MissingField, InvalidPaymentMethod, InvalidRoutingType, InvalidType, InvalidEmail, UnknownPlan,
        TypePlanMismatch, PaymentMethodMismatch, InvalidStripeSession, AmountMismatch, IntakeNotFound,
        IntakePlanMismatch, MechanicNotFound, ActiveSessionExists, SessionConflict, IntakeAlreadyUsed,
        CheckoutPaidForOtherIntake, InsufficientCredits, UnknownUser, InvalidIntake,
        # the session lifecycle and the Stripe outbox
        NotAMechanic, MechanicInactive, NotEligible, NotAssignedMechanic, SessionNotFound, AssignmentNotFound,
        OutboxRequestNotFound, AssignmentTaken, AssignmentClosed, InvalidTransition, SessionNotCancellable,
        InvalidArgument, InvalidKind, InvalidOutcome,
        # payments
        PaymentNotFound, PaymentProcessing, PaymentInUse, NothingToSend, InvalidRefund,
        # timeouts, the waiver, decline
        WaiverNotSigned, AssignmentAlreadyDeclined, NotPreferredMechanic,
    )
}


def from_sql(code: str, message: str | None, status: int, details: dict[str, Any]) -> ApiError:
    """The error for a code SQL raised, carrying the status PostgREST answered."""
    cls = SQL_ERRORS.get(code)
    error = UnknownSqlError(code, message, status) if cls is None else cls(message, status=status)
    error.extra = dict(details)  # not as keywords: details may have a "status" (the session's) of their own
    return error
