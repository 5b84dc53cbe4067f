"""Six numbers a token instead of V logits: the row statistics in torch, on the trainer's device,
written as papo's row-statistics input (docs/SCHEMA.md).

    python row_stats.py stats.arrow        # random logits here; a trainer passes its own
    papo analyze stats.arrow -o polarity.arrow
"""

import sys

import pyarrow as pa
import torch

from papo_client.stats import COLUMNS, row_stats

T, V, TAU = 64, 151_936, 0.7
logits = torch.randn(T, V, dtype=torch.bfloat16)  # [T, V] in the model's dtype
token_ids = torch.randint(V, (T,))
stats = row_stats(logits, token_ids, temperature=TAU)  # chunked, float32 accumulation
columns = {c: stats[c].numpy() for c in COLUMNS}
columns |= {"token_id": token_ids.numpy(), "advantage": torch.randn(T).numpy(), "step": [0] * T}
table = pa.table(columns).replace_schema_metadata({"papo.temperature": repr(TAU)})
with pa.OSFile(sys.argv[1], "wb") as f, pa.ipc.new_file(f, table.schema) as w:
    w.write_table(table)
