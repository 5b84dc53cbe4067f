"""``FlightClient``: the requests of :class:`~papo_client.Client` over Arrow Flight DoExchange
(docs/PROTOCOL.md, "Arrow Flight"), one call per request.

    papo = FlightClient("grpc://127.0.0.1:7879")
    reply = papo.reweight(table, run_id="run-1")

The request metadata are the same keys as on a socket; the token travels as the header
``authorization: Bearer TOKEN`` (``token`` or ``$PAPO_TOKEN``), not as ``papo.token``. The status
of a successful call is the trailer ``papo-status`` (JSON), read through a client middleware;
Flight has no summary stream, so ``Reply.summary`` is an empty table. A failed call is a gRPC
error whose code follows the error kind; it is raised as the same PapoError subclass as on a
socket. Input and request errors share the code InvalidArgument: the message tells them apart
(papo's data errors name a batch or a column; see :func:`_invalid_argument_kind`).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from .errors import PapoError, error_for
from .protocol import Reply, Requests, batch_rows, check_status

TRAILER = "papo-status"
# gRPC's default 4 MiB message limit is too small for batches of logits.
MESSAGE_LIMIT = 1 << 30


class _StatusMiddleware(flight.ClientMiddleware):  # type: ignore[misc]
    def __init__(self, sink: dict[str, str]) -> None:
        super().__init__()
        self.sink = sink

    def received_headers(self, headers: Mapping[str, Any]) -> None:
        # Called with the initial headers and with the trailers: keep papo-status when it comes.
        for key, values in headers.items():
            if key.lower() == TRAILER:
                value = values[0] if isinstance(values, list | tuple) else values
                text = value.decode() if isinstance(value, bytes) else str(value)
                self.sink.update({str(k): str(v) for k, v in json.loads(text).items()})


class _StatusFactory(flight.ClientMiddlewareFactory):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def start_call(self, info: Any) -> _StatusMiddleware:
        return _StatusMiddleware(self.local.sink)


_GRPC_KINDS = {
    "UNAUTHENTICATED": "auth",
    "RESOURCE_EXHAUSTED": "too_large",
    "FAILED_PRECONDITION": "state",
    "ABORTED": "busy",
    "UNAVAILABLE": "shutdown",
}
_DEBUG = re.compile(r"gRPC client debug context: ([A-Z_]+):")
_MESSAGE = re.compile(r"with message: (.*?)\. gRPC client debug context", re.S)
_DATA_ERROR = re.compile(r"\bbatch \d+|\brow \d+|stream")


def _invalid_argument_kind(message: str) -> str:
    """InvalidArgument carries papo's input and request errors alike: input errors are about the
    data (their messages name a batch, a row or the stream), request errors about the metadata."""
    return "input" if _DATA_ERROR.search(message) else "request"


def _error(e: flight.FlightError | pa.ArrowException) -> PapoError:
    """The PapoError of a failed call, from the gRPC code pyarrow reports in its message."""
    text = str(e)
    found = _MESSAGE.search(text)
    message = found.group(1) if found else text.split("\n", 1)[0]
    code = _DEBUG.search(text)
    if code and code.group(1) in _GRPC_KINDS:
        kind = _GRPC_KINDS[code.group(1)]
    elif code and code.group(1) == "INVALID_ARGUMENT":
        kind = _invalid_argument_kind(message)
    elif isinstance(e, flight.FlightUnauthenticatedError):
        kind = "auth"
    elif isinstance(e, flight.FlightUnavailableError):
        kind = "shutdown"
    else:
        kind = "internal"
    return error_for(kind, message, {"papo.status": "error", "papo.error_kind": kind, "papo.error": message})


class FlightClient(Requests):
    """A Flight connection to ``papo serve --flight HOST:PORT``."""

    def __init__(self, location: str, token: str | None = None) -> None:
        self.location = location
        self.token = token if token is not None else (os.environ.get("PAPO_TOKEN") or None)
        self._factory = _StatusFactory()
        self._client = flight.FlightClient(
            location,
            middleware=[self._factory],
            generic_options=[
                ("grpc.max_receive_message_length", MESSAGE_LIMIT),
                ("grpc.max_send_message_length", MESSAGE_LIMIT),
            ],
        )

    def close(self) -> None:
        """Closes the gRPC channel."""
        self._client.close()

    def __enter__(self) -> FlightClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def metadata_token(self) -> str | None:
        return ""  # the token travels as the Bearer header

    def _send(self, body: pa.Table, request: str) -> Reply:
        """One DoExchange call."""
        headers = [(b"authorization", f"Bearer {self.token}".encode())] if self.token else []
        status: dict[str, str] = {}
        self._factory.local.sink = status
        try:
            writer, reader = self._client.do_exchange(
                flight.FlightDescriptor.for_command(b"papo"), flight.FlightCallOptions(headers=headers)
            )
            with writer:
                writer.begin(body.schema)
                if request != "rollback":
                    writer.write_table(body, max_chunksize=batch_rows(body))
                writer.done_writing()
                data = reader.read_all()
        except (flight.FlightError, pa.ArrowException) as e:
            raise _error(e) from e
        if not status:
            status = {"papo.status": "ok", "papo.tokens": str(data.num_rows)}
        check_status(status)
        return Reply(data=data, summary=pa.table({}), status=status)
