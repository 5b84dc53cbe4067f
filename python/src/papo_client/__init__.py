"""papo_client: use papo (entropy polarity for RL fine-tuning of LLMs) from Python trainers.

- :class:`Client` speaks ``papo serve``'s socket protocol (unix, TCP, stdio); :class:`FlightClient`
  the same requests over Arrow Flight; :func:`serve` starts a ``papo serve`` child process.
- :mod:`papo_client.stats` computes the six row statistics per token in torch (docs/SCHEMA.md),
  chunked, with the tensor-parallel merge; :mod:`papo_client.ddp` is the exact data-parallel path.
- Errors from the server are :class:`PapoError` subclasses carrying ``error_kind``.

torch is imported only by the modules that need it (stats, ddp, the trainer plugins).
"""

from .client import Client, connect
from .errors import (
    AuthError,
    BusyError,
    ConnectionLostError,
    InputError,
    InternalError,
    PapoError,
    RequestError,
    ShutdownError,
    StateError,
    TooLargeError,
)
from .flight import FlightClient
from .protocol import Reply
from .server import Server, find_papo, serve

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "BusyError",
    "Client",
    "ConnectionLostError",
    "FlightClient",
    "InputError",
    "InternalError",
    "PapoError",
    "Reply",
    "RequestError",
    "Server",
    "ShutdownError",
    "StateError",
    "TooLargeError",
    "connect",
    "find_papo",
    "serve",
]
