"""pytest fixtures for the reference feature service (registered in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.featureservice.server import ReferenceServer

SECURED_USERS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture
def reference_server(tmp_path):
    """A fresh server with the "demo" seed, auth off, on a free loopback port."""
    with ReferenceServer(tmp_path / "featureservice", seed="demo") as server:
        yield server


@pytest.fixture
def secured_reference_server(tmp_path):
    """Like `reference_server`, with token auth on for users alice and bob."""
    with ReferenceServer(tmp_path / "featureservice", seed="demo", users=SECURED_USERS) as server:
        yield server
