"""``Client``: papo serve's socket protocol (docs/PROTOCOL.md) with pyarrow.

    with Client("unix:///run/papo.sock") as papo:
        reply = papo.reweight(table, run_id="run-1")
        reply.data["reweighted_advantage"]     # per token, in the order of table's rows
        reply.summary["phase"]                 # one row per step

Addresses: ``unix:///path.sock``, ``tcp://host:port``, or ``stdio`` (a child ``papo serve
--listen stdio`` whose standard input and output carry the requests; ``args`` are its flags).
The request is written by a thread while the reply is read, so a request of any size never
waits on the server's reply buffer. A connection that drops before a whole reply came is opened
again and the request sent once more; a second drop raises :class:`ConnectionLostError`. Sending
a ``reweight`` twice is safe: a step that comes again rolls the run back to just before it, and
the weights are those of the first time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Any, Protocol
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.ipc as ipc

from .errors import ConnectionLostError
from .protocol import (
    Reply,
    Requests,
    batch_rows,
    check_status,
    decode_metadata,
)
from .server import ServerLog, find_papo


class _Connection(Protocol):
    reader: IO[bytes]
    writer: IO[bytes]

    def close(self) -> None: ...


class _SocketConnection:
    def __init__(self, address: str, timeout: float | None) -> None:
        url = urlparse(address)
        if url.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(url.path)
            except OSError:
                sock.close()
                raise
        elif url.scheme == "tcp":
            if url.hostname is None or url.port is None:
                raise ValueError(f"papo: address {address!r} has no host:port")
            sock = socket.create_connection((url.hostname, url.port), timeout=timeout)
        else:
            raise ValueError(f"papo: address {address!r} is not unix:///PATH, tcp://HOST:PORT or stdio")
        self.sock = sock
        self.reader: IO[bytes] = sock.makefile("rb")
        self.writer: IO[bytes] = sock.makefile("wb")

    def close(self) -> None:
        for f in (self.writer, self.reader):
            with contextlib.suppress(OSError):
                f.close()
        self.sock.close()


class _StdioConnection:
    """A child ``papo serve --listen stdio``; closing it ends the child (EOF on its stdin)."""

    def __init__(self, papo: str | None, args: Sequence[str]) -> None:
        cmd = [find_papo(papo), "serve", "--listen", "stdio", *args]
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self.log = ServerLog(self.process.stderr)
        self.reader: IO[bytes] = self.process.stdout
        self.writer: IO[bytes] = self.process.stdin

    def close(self) -> None:
        for f in (self.writer, self.reader):
            with contextlib.suppress(OSError):
                f.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _Dropped(Exception):
    """The connection ended before a whole reply."""


class Client(Requests):
    """A connection to ``papo serve`` (opened on first use, kept across requests)."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float | None = None,
        token: str | None = None,
        papo: str | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.token = token
        self._papo = papo
        self._args = tuple(args)
        self._conn: _Connection | None = None
        self.reconnects = 0  # connections opened again after a drop
        if address != "stdio":
            scheme = urlparse(address).scheme
            if scheme not in ("unix", "tcp"):
                raise ValueError(f"papo: address {address!r} is not unix:///PATH, tcp://HOST:PORT or stdio")

    def _connect(self) -> _Connection:
        if self._conn is None:
            if self.address == "stdio":
                self._conn = _StdioConnection(self._papo, self._args)
            else:
                self._conn = _SocketConnection(self.address, self.timeout)
        return self._conn

    def close(self) -> None:
        """Closes the connection (a stdio child exits)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def metadata_token(self) -> str | None:
        return self.token

    def _send(self, body: pa.Table, request: str) -> Reply:
        last: BaseException | None = None
        for attempt in range(2):
            if attempt:
                self.reconnects += 1
            try:
                conn = self._connect()
            except OSError as e:
                raise ConnectionLostError(f"papo: cannot connect to {self.address}: {e}") from e
            try:
                reply = self._exchange(conn, body, batches=request != "rollback")
            except _Dropped as e:
                last = e.__cause__ or e
                self.close()
                continue
            if reply.status.get("papo.status") != "ok":
                # After a broken request stream the server closes the connection: start afresh.
                self.close()
            check_status(reply.status)
            return reply
        raise ConnectionLostError(
            f"papo: {self.address} dropped the connection before the reply, also after reconnecting: {last}"
        )

    def _exchange(self, conn: _Connection, body: pa.Table, batches: bool) -> Reply:
        sent: list[BaseException] = []

        def write() -> None:
            try:
                with ipc.new_stream(conn.writer, body.schema) as w:
                    if batches:
                        w.write_table(body, max_chunksize=batch_rows(body))
                conn.writer.flush()
            except (OSError, pa.ArrowException, ValueError) as e:
                sent.append(e)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        try:
            data = ipc.open_stream(conn.reader).read_all()
            status_reader = ipc.open_stream(conn.reader)
            summary = status_reader.read_all()
            status = decode_metadata(status_reader.schema.metadata)
        except (OSError, pa.ArrowException, ValueError) as e:
            writer.join(5)
            raise _Dropped() from e
        writer.join()
        if sent and status.get("papo.status") == "ok":
            raise _Dropped() from sent[0]
        return Reply(data=data, summary=summary, status=status)


def connect(address: str | None = None, **kwargs: Any) -> Client:
    """A Client of address, or of ``$PAPO_ADDRESS`` when None."""
    addr = address or os.environ.get("PAPO_ADDRESS")
    if not addr:
        raise ValueError("papo: no address given and PAPO_ADDRESS is not set")
    return Client(addr, **kwargs)
