"""The request and reply of docs/PROTOCOL.md, shared by the socket and Flight clients: the
request's schema-metadata keys, the reply's :class:`Reply`, and the outcome check."""

from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .errors import PapoError, error_for

REQUESTS = ("analyze", "reweight", "stats", "rollback")

# Batches of about this many bytes: large enough to amortize the per-batch cost, small enough
# that the server's two batches of read-ahead stay modest (docs/PROTOCOL.md, back-pressure).
BATCH_BYTES = 16 << 20


@dataclass
class Reply:
    """A request's reply: ``data`` the per-token output (input order; for ``stats`` the rank's
    partials table), ``summary`` one row per answered step, ``status`` the status keys
    (``papo.status``, ``papo.engine``, ``papo.committed``, ``papo.rollback``, ...)."""

    data: pa.Table
    summary: pa.Table
    status: dict[str, str] = field(default_factory=dict)


def global_stats_json(global_stats: pa.Table | Iterable[Mapping[str, Any]] | str) -> str:
    """``papo.global_stats``: the steps' global partials as a JSON array of row objects. Accepts
    a partials table (the ranks' ``stats`` replies summed), a list of row dicts, or JSON text."""
    if isinstance(global_stats, str):
        return global_stats
    rows = global_stats.to_pylist() if isinstance(global_stats, pa.Table) else [dict(r) for r in global_stats]
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"papo: global stats, step {r.get('step')}: {k} is {v}")
    # json writes a float64 with repr's digits: the server reads back exactly the sums.
    return json.dumps(rows, separators=(",", ":"))


def request_metadata(
    request: str = "analyze",
    run_id: str | None = None,
    method: str | None = None,
    config: Mapping[str, Any] | str | None = None,
    global_stats: pa.Table | Iterable[Mapping[str, Any]] | str | None = None,
    reset_state: bool = False,
    columns: Iterable[str] | None = None,
    token: str | None = None,
    **metadata: Any,
) -> dict[str, str]:
    """The request's schema-metadata keys (docs/PROTOCOL.md, "A request"). Extra keyword
    arguments become ``papo.<name>`` keys (``rollback_to=3``, ``natural_gradient=True``,
    ``temperature=0.7``); a key that already starts with ``papo.`` is kept as it is."""
    if request not in REQUESTS:
        raise ValueError(f"papo: request {request!r} is not one of {', '.join(REQUESTS)}")
    md: dict[str, str] = {"papo.request": request}
    if run_id is not None:
        md["papo.run_id"] = run_id
    if method is not None:
        md["papo.method"] = method
    if config is not None:
        md["papo.config"] = config if isinstance(config, str) else json.dumps(dict(config))
    if global_stats is not None:
        md["papo.global_stats"] = global_stats_json(global_stats)
    if reset_state:
        md["papo.reset_state"] = "true"
    if columns is not None:
        # papo.columns (issue 23): only sent when asked for, so a server without it is not bothered.
        md["papo.columns"] = ",".join(columns)
    for k, v in metadata.items():
        key = k if k.startswith("papo.") else "papo." + k
        md[key] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    if token is None:
        token = os.environ.get("PAPO_TOKEN") or None
    if token:
        md["papo.token"] = token
    return md


def with_metadata(table: pa.Table, md: Mapping[str, str]) -> pa.Table:
    """table with md merged over its own schema metadata (papo.temperature etc. are kept)."""
    merged = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    merged.update(md)
    return table.replace_schema_metadata(merged)


def batch_rows(table: pa.Table) -> int:
    """Rows per record batch for about BATCH_BYTES a batch (at least one row)."""
    rows = int(table.num_rows)
    if rows == 0:
        return 1
    per_row = max(1, int(table.nbytes) // rows)
    return max(1, BATCH_BYTES // per_row)


def decode_metadata(md: Mapping[bytes, bytes] | None) -> dict[str, str]:
    """A schema's metadata as str keys and values."""
    return {k.decode(): v.decode() for k, v in (md or {}).items()}


def check_status(status: dict[str, str]) -> None:
    """Raises the typed PapoError of an error status; returns for ``papo.status`` ok."""
    if status.get("papo.status") == "ok":
        return
    kind = status.get("papo.error_kind") or "internal"
    message = status.get("papo.error") or f"papo: status {status.get('papo.status')!r} without a message"
    raise error_for(kind, message, status)


__all__ = [
    "REQUESTS",
    "PapoError",
    "Reply",
    "Requests",
    "batch_rows",
    "check_status",
    "decode_metadata",
    "global_stats_json",
    "request_metadata",
    "with_metadata",
]


class Requests(ABC):
    """The convenience requests over a transport's :meth:`request` (Client, FlightClient)."""

    def request(
        self,
        table: pa.Table | None,
        request: str = "analyze",
        run_id: str | None = None,
        method: str | None = None,
        config: Mapping[str, Any] | str | None = None,
        global_stats: pa.Table | Iterable[Mapping[str, Any]] | str | None = None,
        reset_state: bool = False,
        columns: Iterable[str] | None = None,
        **metadata: Any,
    ) -> Reply:
        """Sends table (the token rows of docs/SCHEMA.md; None for a rollback) as one request of
        docs/PROTOCOL.md and returns its Reply; an error reply raises its PapoError subclass.
        Further keywords become ``papo.<name>`` keys (``rollback_to=3``, ``natural_gradient=True``)."""
        md = request_metadata(
            request,
            run_id=run_id,
            method=method,
            config=config,
            global_stats=global_stats,
            reset_state=reset_state,
            columns=columns,
            token=self.metadata_token(),
            **metadata,
        )
        return self._send(with_metadata(table if table is not None else pa.table({}), md), request)

    def metadata_token(self) -> str | None:
        """The ``papo.token`` the request carries: None reads ``PAPO_TOKEN``, "" sends none (a
        transport that authenticates otherwise, as Flight's Bearer header)."""
        return None

    @abstractmethod
    def _send(self, body: pa.Table, request: str) -> Reply:
        """Sends body (the rows with the request's metadata) and returns the checked Reply."""

    def analyze(self, table: pa.Table, **kwargs: Any) -> Reply:
        """``papo analyze``: entropy, polarity and predicted ΔH per token."""
        return self.request(table, "analyze", **kwargs)

    def reweight(self, table: pa.Table, run_id: str, **kwargs: Any) -> Reply:
        """``papo reweight`` for the run run_id (its state in the server's state directory)."""
        return self.request(table, "reweight", run_id=run_id, **kwargs)

    def stats(self, table: pa.Table, **kwargs: Any) -> Reply:
        """``papo stats``: this rank's partials table as ``data`` (one row per step)."""
        return self.request(table, "stats", **kwargs)

    def rollback(self, run_id: str, to_step: int, like: pa.Table | None = None, **kwargs: Any) -> Reply:
        """Forgets the run's steps from to_step on (``papo.rollback`` says what was dropped). The
        request carries the run's parameters: like's schema metadata (a table of the run, for
        papo.temperature, papo.clip_low, ...) and keywords such as ``clip_low=0.2``."""
        empty = pa.table({})
        if like is not None:
            empty = empty.replace_schema_metadata(like.schema.metadata)
        return self.request(empty, "rollback", run_id=run_id, rollback_to=to_step, **kwargs)
