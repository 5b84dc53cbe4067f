"""Writes io/parquet/testdata/duckdb_rowstats.parquet with DuckDB (a second Parquet writer): four rows of
row statistics and papo.temperature / papo.lr as Parquet key-value metadata (KV_METADATA), no
ARROW:schema. TestParquetMetadata and TestClose (io/parquet) and FuzzTables (io) read it; run again to refresh it:

    python3 io/parquet/testdata/duckdb_parquet.py   # needs the duckdb Python package (2.0.1 wrote it)
"""

from pathlib import Path

import duckdb

out = Path(__file__).with_name("duckdb_rowstats.parquet")
duckdb.sql(
    """
    COPY (SELECT token_id::BIGINT AS token_id, step::BIGINT AS step,
        COLUMNS('^(logit_max|sum_exp.*|sampled_logit|advantage)$')::DOUBLE
      FROM (VALUES
        (3, 0, 1.5, 0.25, -0.5, 1.1, -0.2, 1.0, 0.5),
        (4, 0, 2.0, 0.75, -0.9, 1.3, -0.4, 2.0, -0.5),
        (5, 1, 0.5, 1.25, -1.2, 1.2, -0.6, -1.0, 1.0),
        (6, 1, 3.0, 0.05, -0.1, 1.01, -0.02, 3.0, -1.0))
      AS t(token_id, step, logit_max, sum_exp_rest, sum_exp_v, sum_exp2, sum_exp2_v, sampled_logit, advantage))
    TO '%s' (FORMAT parquet, KV_METADATA {'papo.temperature': '2', 'papo.lr': '0.5'})
    """
    % out
)
print(out)
