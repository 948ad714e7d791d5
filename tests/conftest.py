"""Shared pytest configuration: QGIS runs offscreen, the reference service comes as fixtures."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest_plugins = ["tests.featureservice.fixtures"]
