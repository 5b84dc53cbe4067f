"""Fixtures: papo built once per session from this checkout, a generated input, a server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from papo_client import serve
from papo_client.server import Server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def papo_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """bin/papo of this checkout, built with go (or $PAPO_BIN as it is)."""
    if os.environ.get("PAPO_BIN"):
        return os.environ["PAPO_BIN"]
    out = tmp_path_factory.mktemp("bin") / "papo"
    subprocess.run(["go", "build", "-o", str(out), "./cmd/papo"], cwd=REPO, check=True)
    return str(out)


def run_papo(papo_bin: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs the CLI; a non-zero exit fails the test with its stderr."""
    p = subprocess.run([papo_bin, *args], capture_output=True, text=True)
    assert p.returncode == 0, f"papo {' '.join(args)}: exit {p.returncode}: {p.stderr}"
    return p


def read_arrow(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as src:
        return ipc.open_file(src).read_all()


@pytest.fixture(scope="session", params=["float32", "float16", "bfloat16"])
def rollouts(request: pytest.FixtureRequest, papo_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """papo gen's rollouts: 3 steps of 96 tokens at V = 1000 in the given dtype."""
    out = tmp_path_factory.mktemp("gen") / f"rollouts-{request.param}.arrow"
    run_papo(
        papo_bin,
        "gen",
        "-o",
        str(out),
        "--vocab",
        "1000",
        "--tokens",
        "96",
        "--steps",
        "3",
        "--dtype",
        request.param,
        "--seed",
        "11",
    )
    return out


@pytest.fixture
def server(papo_bin: str, tmp_path: Path) -> Iterator[Server]:
    """papo serve on a unix socket and on Flight, with a fresh state directory."""
    with serve(
        papo_bin,
        state_dir=tmp_path / "state",
        flight=True,
        env={**os.environ, "PAPO_TOKEN": ""},
        args=["--device", "cpu", "--insecure-loopback"],
    ) as s:
        yield s
