"""papo over Arrow Flight with pyarrow (docs/PROTOCOL.md, "Arrow Flight"): one DoExchange call
per request, the same request metadata as on a socket, the token as a Bearer header.

    papo serve --listen unix:///run/papo.sock --flight 127.0.0.1:7879 --state-dir /var/lib/papo

    out, status = papo_exchange("grpc://127.0.0.1:7879", table,
                                {"papo.request": "reweight", "papo.run_id": "run-1"})
"""
import json
import os

import pyarrow as pa
import pyarrow.flight as flight


def papo_exchange(location, table, metadata=None, token=None):
    """Sends table as one request; returns (the per-token output as a Table, the status dict).
    A failed request raises pyarrow.flight.FlightError with papo's message."""
    md = dict(table.schema.metadata or {})
    md.update({k.encode(): str(v).encode() for k, v in (metadata or {}).items()})
    table = table.replace_schema_metadata(md)
    token = token or os.environ.get("PAPO_TOKEN")
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    # gRPC's default 4 MiB message limit is too small for batches of logits.
    client = flight.FlightClient(location, generic_options=[
        ("grpc.max_receive_message_length", 1 << 30), ("grpc.max_send_message_length", 1 << 30)])
    options = flight.FlightCallOptions(headers=headers)
    writer, reader = client.do_exchange(flight.FlightDescriptor.for_command(b"papo"), options)
    with writer:
        writer.begin(table.schema)
        writer.write_table(table, max_chunksize=256)
        writer.done_writing()
        out = reader.read_all()
    # The status travels as the call's trailer "papo-status" (JSON); pyarrow does not expose
    # trailers, and a failed request has already raised, so this is the success case.
    return out, {"papo.status": "ok", "papo.tokens": str(out.num_rows)}


if __name__ == "__main__":
    import sys

    import pyarrow.ipc as ipc

    table = ipc.open_file(sys.argv[2]).read_all()
    out, status = papo_exchange(sys.argv[1], table)
    print(json.dumps(status), out.num_rows)
