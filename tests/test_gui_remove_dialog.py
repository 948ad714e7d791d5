"""The removal confirmation says what is deleted and holds back until lost edits are confirmed."""

from __future__ import annotations

from pathlib import Path

from qgis.PyQt.QtWidgets import QDialogButtonBox

from plugin.core.removal import GeodatabaseRemovalInfo, RemovalPlan, ReplicaRef
from plugin.gui.remove_dialog import RemoveDialog


def _plan(pending=None, conflicts=0, error=None) -> RemovalPlan:
    gdb = GeodatabaseRemovalInfo(
        path=Path("/maps/demo/Demo.gpkg"),
        title="Demo",
        replicas=[
            ReplicaRef("http://h/arcgis/rest/services/Demo/FeatureServer", "r1", "Demo.gpkg")
        ],
        pending=dict(pending or {}),
        conflicts=conflicts,
        error=error,
    )
    return RemovalPlan(title="Demo <map>", folder=Path("/maps/demo"), geodatabases=[gdb])


def _remove_enabled(dialog) -> bool:
    return dialog.buttonBox.button(QDialogButtonBox.StandardButton.Ok).isEnabled()


def test_a_map_without_pending_edits_can_be_removed_at_once(qgis_app):
    dialog = RemoveDialog(_plan(conflicts=2), layers_in_project=5)

    text = dialog.questionLabel.text()
    assert "<b>Demo &lt;map&gt;</b>" in text
    assert "replica is unregistered" in text and "/maps/demo" in text
    assert dialog.pendingGroup.isHidden()
    assert _remove_enabled(dialog)
    assert "conflict log's 2 entries" in dialog.detailsLabel.text()
    assert "5 layers" in dialog.detailsLabel.text()
    assert not dialog.parameters().discard_pending_edits


def test_pending_edits_are_listed_per_layer_and_must_be_discarded_explicitly(qgis_app):
    dialog = RemoveDialog(_plan(pending={"Points": 2, "Inspections": 1}))

    assert not dialog.pendingGroup.isHidden()
    assert dialog.pending_lines() == [
        "Points: 2 edits (Demo.gpkg)",
        "Inspections: 1 edit (Demo.gpkg)",
    ]
    assert dialog.discardCheck.text() == "Discard these 3 edits"
    assert not _remove_enabled(dialog)

    dialog.discardCheck.setChecked(True)

    assert _remove_enabled(dialog)
    assert dialog.parameters().discard_pending_edits


def test_an_unreadable_geodatabase_must_be_confirmed_too(qgis_app):
    dialog = RemoveDialog(_plan(error="file is not a database"))

    assert dialog.pending_lines() == ["Demo.gpkg cannot be read: file is not a database"]
    assert not _remove_enabled(dialog)
    dialog.discardCheck.setChecked(True)
    assert _remove_enabled(dialog)


def test_edits_not_saved_in_qgis_are_named_and_must_be_confirmed(qgis_app):
    dialog = RemoveDialog(_plan(), 5, None, ["Points"])

    assert dialog.pending_lines() == ["Points: edits not saved in QGIS"]
    assert not dialog.pendingGroup.isHidden()
    assert dialog.discardCheck.text() == "Discard these edits"
    assert not _remove_enabled(dialog)
    dialog.discardCheck.setChecked(True)
    assert _remove_enabled(dialog)
    # Nothing pending in the geodatabase: the core need not be told to discard anything.
    assert not dialog.parameters().discard_pending_edits
