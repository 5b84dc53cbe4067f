"""``serve()``: a ``papo serve`` child process for tests and notebooks.

    with serve(state_dir="/tmp/papo-state") as server:
        reply = server.client().reweight(table, run_id="run-1")

The binary is the ``papo`` argument, else ``$PAPO_BIN``, else the repository's ``bin/papo``
(an editable install of ``./python``), else ``papo`` on ``PATH``. The helper waits for the start
line (docs/PROTOCOL.md, "Transports"), exposes the addresses it names, and on exit sends SIGTERM
and waits: requests in progress finish and commit first.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from .client import Client
    from .flight import FlightClient

START_LINE = "papo serve: listening on "


def find_papo(papo: str | os.PathLike[str] | None = None) -> str:
    """The papo binary: papo, ``$PAPO_BIN``, the repository's ``bin/papo``, or ``papo`` on PATH."""
    tried: list[str] = []
    for cand in (papo, os.environ.get("PAPO_BIN")):
        if cand:
            path = str(cand)
            if os.access(path, os.X_OK):
                return path
            tried.append(path)
    repo_bin = Path(__file__).resolve().parents[3] / "bin" / "papo"
    if os.access(repo_bin, os.X_OK):
        return str(repo_bin)
    tried.append(str(repo_bin))
    found = shutil.which("papo")
    if found:
        return found
    tried.append("papo on PATH")
    raise FileNotFoundError(f"papo: no papo binary (tried {', '.join(tried)}; build it with `make build`)")


class ServerLog:
    """A child's stderr, drained by a thread (a full pipe would block the child): the last lines,
    and the start line once it came."""

    def __init__(self, stream: IO[bytes], keep: int = 200) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self.start_line: str | None = None
        self.started = threading.Event()
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        try:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append(line)
                if self.start_line is None and line.startswith(START_LINE):
                    self.start_line = line
                    self.started.set()
        finally:
            self.closed.set()
            self.started.set()

    def wait_started(self, timeout: float) -> str:
        """The start line; raises RuntimeError with the log when the child stopped without one."""
        if not self.started.wait(timeout) or self.start_line is None:
            raise RuntimeError("papo serve did not start:\n" + self.text())
        return self.start_line

    def text(self) -> str:
        """The lines kept, one a line."""
        return "\n".join(self.lines)


def parse_start_line(line: str) -> list[str]:
    """The addresses of a start line (``unix://…``, ``tcp://…``, ``stdio``, ``flight grpc://…``,
    ``metrics http://…``), in the order printed."""
    rest = line[len(START_LINE) :]
    where = rest.split("; engine ", 1)[0]
    return [a.strip() for a in where.split(", ") if a.strip()]


class Server:
    """A running ``papo serve`` child: ``address`` (the first socket address), ``addresses``
    (all), ``flight_location`` (``grpc://…`` when started with ``flight=True``), ``state_dir``."""

    def __init__(
        self, process: subprocess.Popen[bytes], log: ServerLog, addresses: list[str], state_dir: str | None
    ) -> None:
        self.process = process
        self.log = log
        self.addresses = addresses
        self.state_dir = state_dir
        sockets = [a for a in addresses if a.startswith(("unix://", "tcp://"))]
        self.address = sockets[0] if sockets else ""
        flights = [a.split(" ", 1)[1] for a in addresses if a.startswith("flight ")]
        self.flight_location = flights[0] if flights else ""

    def client(self, **kwargs: object) -> Client:
        """A Client of this server's first socket address."""
        from .client import Client

        if not self.address:
            raise RuntimeError(
                "papo: this server listens on no socket (start it with listen='unix' or 'tcp')"
            )
        return Client(self.address, **kwargs)  # type: ignore[arg-type]

    def flight_client(self, token: str | None = None) -> FlightClient:
        """A FlightClient of this server (started with ``flight=True``)."""
        from .flight import FlightClient

        if not self.flight_location:
            raise RuntimeError("papo: this server has no Flight listener (start it with flight=True)")
        return FlightClient(self.flight_location, token=token)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait (requests in progress finish and commit); SIGKILL after timeout.
        Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.closed.wait(5)
        return self.process.returncode


def _listen_address(listen: str, tmp: str) -> str:
    if listen == "unix":
        return "unix://" + os.path.join(tmp, "papo.sock")
    if listen == "tcp":
        return "tcp://127.0.0.1:0"
    return listen


@contextmanager
def serve(
    papo: str | os.PathLike[str] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    listen: str | Sequence[str] = "unix",
    args: Sequence[str] = (),
    flight: bool = False,
    env: dict[str, str] | None = None,
    start_timeout: float = 60.0,
) -> Iterator[Server]:
    """Starts ``papo serve`` as a child process and yields its :class:`Server`; stops it on exit.

    ``listen`` is ``"unix"`` (a socket in a temporary directory), ``"tcp"`` (loopback, a port
    chosen by the server), an address, or a list of them. ``state_dir`` None: a temporary
    directory, removed afterwards. ``args`` are further flags of ``papo serve`` (reweight's)."""
    binary = find_papo(papo)
    with tempfile.TemporaryDirectory(prefix="papo-serve-") as tmp:
        state = str(state_dir) if state_dir is not None else os.path.join(tmp, "state")
        cmd = [binary, "serve", "--state-dir", state]
        for a in [listen] if isinstance(listen, str) else listen:
            cmd += ["--listen", _listen_address(a, tmp)]
        if flight:
            cmd += ["--flight", "127.0.0.1:0"]
        cmd += list(args)
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        assert process.stderr is not None
        log = ServerLog(process.stderr)
        server: Server | None = None
        try:
            server = Server(process, log, parse_start_line(log.wait_started(start_timeout)), state)
            yield server
        finally:
            if server is not None:
                server.stop()
            elif process.poll() is None:
                process.kill()
                process.wait()
