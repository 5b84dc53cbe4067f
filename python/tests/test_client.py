"""Client ≡ CLI bit for bit, errors as typed exceptions, Flight ≡ socket (issue 20, tests 1–2)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import read_arrow, run_papo

from papo_client import InputError, RequestError
from papo_client.server import Server


def load(path: Path) -> pa.Table:
    """The rollouts without the papo.run_id that papo gen writes, so that each request names its
    run itself."""
    table = read_arrow(path)
    md = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"papo.run_id"}
    return table.replace_schema_metadata(md)


def step_slice(table: pa.Table, step: int) -> pa.Table:
    return table.filter(pc.equal(table["step"], step))


def assert_same(got: pa.Table, want: pa.Table) -> None:
    """Equal column by column, bit for bit (NaN = NaN)."""
    assert got.column_names == want.column_names
    for name in want.column_names:
        assert got[name].combine_chunks().equals(want[name].combine_chunks()), name


def test_analyze_equals_cli(server: Server, rollouts: Path, papo_bin: str, tmp_path: Path) -> None:
    table = load(rollouts)
    out = tmp_path / "cli.arrow"
    run_papo(papo_bin, "analyze", str(rollouts), "-o", str(out), "--device", "cpu", "--quiet")
    with server.client() as c:
        reply = c.analyze(table)
    assert reply.status["papo.status"] == "ok"
    assert reply.data.num_rows == table.num_rows
    assert_same(reply.data, read_arrow(out))


def test_reweight_requests_equal_one_cli_run(
    server: Server, rollouts: Path, papo_bin: str, tmp_path: Path
) -> None:
    """Three requests of one step each (a run_id's state across them), then a re-sent step that
    rolls the run back and gets the same weights: all equal one `papo reweight --state` run."""
    table = load(rollouts)
    out = tmp_path / "cli.arrow"
    run_papo(
        papo_bin,
        "reweight",
        str(rollouts),
        "-o",
        str(out),
        "--state",
        str(tmp_path / "s.json"),
        "--device",
        "cpu",
        "--quiet",
    )
    want = read_arrow(out)
    with server.client() as c:
        replies = [c.reweight(step_slice(table, k), run_id="run-1") for k in range(3)]
        again = c.reweight(step_slice(table, 1), run_id="run-1")
    assert_same(pa.concat_tables([r.data for r in replies]), want)
    assert [r.status["papo.last_step"] for r in replies] == ["0", "1", "2"]
    assert again.status.get("papo.rollback"), again.status
    assert_same(again.data, step_slice(want, 1))


def test_errors_are_typed(server: Server, rollouts: Path) -> None:
    table = load(rollouts)
    bad = table.set_column(
        table.schema.get_field_index("token_id"), "token_id", pa.array([5000] * table.num_rows, pa.int32())
    )
    with server.client() as c:
        with pytest.raises(InputError) as e:
            c.analyze(bad)
        assert e.value.error_kind == "input" and "token_id" in str(e.value)
        with pytest.raises(RequestError):  # no run_id
            c.request(table, "reweight")
        assert c.analyze(table).status["papo.status"] == "ok"  # usable after errors


def test_flight_equals_socket(server: Server, rollouts: Path) -> None:
    table = load(rollouts)
    with server.client() as c:
        sock = c.reweight(table, run_id="sock")
    flight = server.flight_client().reweight(table, run_id="flight")
    assert_same(flight.data, sock.data)
    assert flight.status["papo.status"] == "ok"
