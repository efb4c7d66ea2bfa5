"""Fixtures of the learning-rule tests."""

import pytest

from tests.learning.tasks import clusters


@pytest.fixture(scope="module")
def task():
    return clusters(512, seed=0), clusters(256, seed=1)
