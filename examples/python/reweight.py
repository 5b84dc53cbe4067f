"""Reweight a step's token rows with a running `papo serve` (the papo_client package).

papo serve --listen unix:///tmp/papo.sock --state-dir /tmp/papo-state &
python reweight.py unix:///tmp/papo.sock rollouts.arrow run-1
"""

import sys

import pyarrow as pa

from papo_client import Client

address, path, run_id = sys.argv[1:4]
table = pa.ipc.open_file(pa.memory_map(path)).read_all()
with Client(address) as papo:  # unix://, tcp://, tls://; errors: InputError, StateError, ...
    reply = papo.reweight(table, run_id=run_id)
advantages = reply.data["reweighted_advantage"]  # per token, in the order of table's rows
for row in reply.summary.select(["step", "tokens", "mean_entropy", "phase"]).to_pylist():
    print(row)
print(f"{len(advantages)} tokens, engine {reply.status.get('papo.engine')}")
