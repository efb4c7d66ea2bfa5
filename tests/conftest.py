"""Shared test helpers: where the repository and its shared data live."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
