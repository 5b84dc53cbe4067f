"""A papo serve client with pyarrow (docs/PROTOCOL.md), the same protocol as
examples/node/client.mjs.

    reply = PapoClient("unix:///run/papo.sock").request(
        table, {"papo.request": "reweight", "papo.run_id": "run-1"})
    reply.data["reweighted_advantage"]   # per token, in input order
    reply.status["papo.status"]          # "ok", or "error" with papo.error

On TCP (tcp://127.0.0.1:PORT, tls://HOST:PORT) the server requires its token: set PAPO_TOKEN.

In verl, call it where the driver computes advantages (after compute_advantage in
ray_trainer.fit); in TRL, at the end of GRPOTrainer._generate_and_score_completions.
"""
import os
import socket
import ssl
from urllib.parse import urlparse

from pyarrow import ipc


class Reply:
    def __init__(self, data, status, summary):
        self.data = data  # pyarrow.Table: the per-token output
        self.status = status  # dict: papo.status, papo.error, papo.steps, ...
        self.summary = summary  # pyarrow.Table: one row per step (phase, EMA, weights)


class PapoClient:
    def __init__(self, address):
        url = urlparse(address)
        if url.scheme == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(url.path)
        elif url.scheme == "tls":
            # papo serve --tls-cert: the certificate is checked against PAPO_TLS_CA (a PEM
            # file) when set, else the system's roots.
            ctx = ssl.create_default_context(cafile=os.environ.get("PAPO_TLS_CA"))
            raw = socket.create_connection((url.hostname, url.port))
            self.sock = ctx.wrap_socket(raw, server_hostname=url.hostname)
        else:
            self.sock = socket.create_connection((url.hostname, url.port))
        self.file = self.sock.makefile("rwb")

    def request(self, table, metadata=None):
        md = dict(table.schema.metadata or {})
        md.update({k.encode(): str(v).encode() for k, v in (metadata or {}).items()})
        if os.environ.get("PAPO_TOKEN"):
            md.setdefault(b"papo.token", os.environ["PAPO_TOKEN"].encode())
        table = table.replace_schema_metadata(md)
        # A reply of up to 64 MiB is buffered by the server: writing the whole request
        # before reading is fine for a training step's token rows.
        with ipc.new_stream(self.file, table.schema) as writer:
            writer.write_table(table, max_chunksize=256)
        self.file.flush()
        data = ipc.open_stream(self.file).read_all()  # the per-token output
        status_reader = ipc.open_stream(self.file)  # then the status stream
        summary = status_reader.read_all()
        status = {k.decode(): v.decode() for k, v in (status_reader.schema.metadata or {}).items()}
        if status.get("papo.status") != "ok":
            raise RuntimeError(f"papo: {status.get('papo.error_kind')}: {status.get('papo.error')}")
        return Reply(data, status, summary)

    def close(self):
        self.file.close()
        self.sock.close()
