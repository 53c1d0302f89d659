"""`bench.books` on a 100,000-character book (slow: about six minutes on 2 cores): two
worker processes make it as units, and the audio equals, sample for sample, the bare
engine's pieces joined (the script exits 1 otherwise). The figures land in
bench/out/books-*.json and the README."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_100000_character_book_equals_its_pieces_joined() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.books", "--chars", "100000", "--workers", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=1700,
    )  # fmt: skip
    print(result.stdout[-2000:])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "sample for sample equal to its pieces joined: [True]" in result.stdout
