"""Typed exceptions for papo's error kinds (docs/PROTOCOL.md, "The reply": ``papo.error_kind``).

Every server error is a :class:`PapoError` whose ``error_kind`` is the protocol's kind; each kind
has its own subclass so that a trainer can catch, say, :class:`StateError` (the run state refused
the request's parameters) apart from :class:`InputError` (a bad token row).
"""

from __future__ import annotations


class PapoError(Exception):
    """An error reply from papo: ``error_kind`` is the protocol's kind, ``status`` the whole
    status (``papo.error``, ``papo.steps``, ...) when the transport delivered one."""

    error_kind = "internal"

    def __init__(self, message: str, status: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status: dict[str, str] = dict(status or {})


class InputError(PapoError):
    """The request's data: a bad row, column, schema or stream (the message names batch, row, column)."""

    error_kind = "input"


class RequestError(PapoError):
    """The request's metadata: an unknown request or method, a bad run id, config or global stats."""

    error_kind = "request"


class AuthError(PapoError):
    """A missing or wrong token (``PAPO_TOKEN``)."""

    error_kind = "auth"


class TooLargeError(PapoError):
    """A record batch over the server's ``--max-batch-bytes``: send smaller batches."""

    error_kind = "too_large"


class StateError(PapoError):
    """The run state refused the request (other parameters, a step before the history kept)."""

    error_kind = "state"


class BusyError(PapoError):
    """The server is at its limit of requests in progress."""

    error_kind = "busy"


class ShutdownError(PapoError):
    """The server is shutting down."""

    error_kind = "shutdown"


class InternalError(PapoError):
    """An error inside papo (a bug): the message says where."""

    error_kind = "internal"


class ConnectionLostError(PapoError):
    """The connection dropped before a whole reply came, and once more after reconnecting."""

    error_kind = "connection"


_BY_KIND: dict[str, type[PapoError]] = {
    cls.error_kind: cls
    for cls in (
        InputError,
        RequestError,
        AuthError,
        TooLargeError,
        StateError,
        BusyError,
        ShutdownError,
        InternalError,
    )
}


def error_for(kind: str, message: str, status: dict[str, str] | None = None) -> PapoError:
    """The exception of an error kind (an unknown kind is an :class:`InternalError` naming it)."""
    cls = _BY_KIND.get(kind)
    if cls is None:
        return InternalError(f"{message} (unknown error kind {kind!r})", status)
    return cls(message, status)
