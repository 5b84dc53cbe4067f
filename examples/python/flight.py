"""The same request over Arrow Flight (docs/PROTOCOL.md, "Arrow Flight"): a multi-host trainer
reaches one `papo serve --flight HOST:PORT`.

    PAPO_TOKEN=secret papo serve --listen unix:///tmp/papo.sock --flight 127.0.0.1:7879 &
    PAPO_TOKEN=secret python flight.py grpc://127.0.0.1:7879 rollouts.arrow run-1
"""

import sys

import pyarrow as pa

from papo_client import FlightClient

location, path, run_id = sys.argv[1:4]
table = pa.ipc.open_file(pa.memory_map(path)).read_all()
with FlightClient(location) as papo:  # the Bearer token from PAPO_TOKEN
    reply = papo.reweight(table, run_id=run_id)
print(reply.data.num_rows, "tokens;", reply.status)
