"""The removal confirmation says what is deleted, holds back until lost edits are confirmed, and
its Remove and Cancel buttons answer it."""

from __future__ import annotations

from pathlib import Path

import pytest
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox

from plugin.core.removal import GeodatabaseRemovalInfo, RemovalPlan, ReplicaRef
from plugin.gui.remove_dialog import RemoveDialog
from tests.gui_user import click


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


@pytest.fixture
def show(qgis_app):
    shown = []

    def make(*args, **kwargs) -> RemoveDialog:
        dialog = RemoveDialog(*args, **kwargs)
        dialog.show()
        shown.append(dialog)
        return dialog

    yield make
    for dialog in shown:
        dialog.hide()
        dialog.deleteLater()


def _remove_button(dialog):
    button = dialog.buttonBox.button(QDialogButtonBox.StandardButton.Ok)
    assert button.text() == "Remove"
    return button


def _pending_lines(dialog) -> list[str]:
    return [dialog.pendingList.item(row).text() for row in range(dialog.pendingList.count())]


def test_a_map_without_pending_edits_can_be_removed_at_once(show):
    dialog = show(_plan(conflicts=2), layers_in_project=5)

    text = dialog.questionLabel.text()
    assert "<b>Demo &lt;map&gt;</b>" in text
    assert "replica is unregistered" in text and "/maps/demo" in text
    assert dialog.pendingGroup.isHidden()
    assert "conflict log's 2 entries" in dialog.detailsLabel.text()
    assert "5 layers" in dialog.detailsLabel.text()

    click(_remove_button(dialog))

    assert not dialog.isVisible()
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert not dialog.parameters().discard_pending_edits


def test_cancel_and_escape_answer_no(show):
    dialog = show(_plan())
    click(dialog.buttonBox.button(QDialogButtonBox.StandardButton.Cancel))
    assert not dialog.isVisible()
    assert dialog.result() == QDialog.DialogCode.Rejected

    dialog = show(_plan())
    QTest.keyClick(dialog, Qt.Key.Key_Escape)
    assert not dialog.isVisible()
    assert dialog.result() == QDialog.DialogCode.Rejected


def test_pending_edits_are_listed_per_layer_and_must_be_discarded_explicitly(show):
    dialog = show(_plan(pending={"Points": 2, "Inspections": 1}))

    assert not dialog.pendingGroup.isHidden()
    assert _pending_lines(dialog) == [
        "Points: 2 edits (Demo.gpkg)",
        "Inspections: 1 edit (Demo.gpkg)",
    ]
    assert dialog.discardCheck.text() == "Discard these 3 edits"
    assert not _remove_button(dialog).isEnabled()

    click(dialog.discardCheck)
    click(_remove_button(dialog))

    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.parameters().discard_pending_edits


def test_enter_removes_only_once_the_edits_are_confirmed(show):
    dialog = show(_plan(pending={"Points": 1}))
    QTest.keyClick(dialog, Qt.Key.Key_Return)
    assert dialog.isVisible()  # Remove is disabled: Enter does nothing yet

    click(dialog.discardCheck)
    QTest.keyClick(dialog.discardCheck, Qt.Key.Key_Return)

    assert not dialog.isVisible()
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.parameters().discard_pending_edits


def test_an_unreadable_geodatabase_must_be_confirmed_too(show):
    dialog = show(_plan(error="file is not a database"))

    assert _pending_lines(dialog) == ["Demo.gpkg cannot be read: file is not a database"]
    assert not _remove_button(dialog).isEnabled()
    click(dialog.discardCheck)
    assert _remove_button(dialog).isEnabled()


def test_edits_not_saved_in_qgis_are_named_and_must_be_confirmed(show):
    dialog = show(_plan(), 5, None, ["Points"])

    assert _pending_lines(dialog) == ["Points: edits not saved in QGIS"]
    assert not dialog.pendingGroup.isHidden()
    assert dialog.discardCheck.text() == "Discard these edits"
    assert not _remove_button(dialog).isEnabled()
    click(dialog.discardCheck)
    click(_remove_button(dialog))
    # Nothing pending in the geodatabase: the core need not be told to discard anything.
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert not dialog.parameters().discard_pending_edits


def test_a_copy_of_a_map_is_named_and_the_files_only_are_removed_unless_unticked(show):
    plan = _plan()
    copy = "Demo.gpkg shares its replica with Demo.gpkg of the offline map in /maps/original."
    plan.geodatabases[0].copies.append(copy)
    dialog = show(plan)

    assert dialog.copyGroup.isVisible()
    assert copy in dialog.copyLabel.text() and "stop the other copy" in dialog.copyLabel.text()
    assert "replicas: see below" in dialog.questionLabel.text()
    assert dialog.filesOnlyCheck.isChecked()

    click(dialog.filesOnlyCheck)  # the other copy is gone: unregister after all
    assert not dialog.filesOnlyCheck.isChecked()
    click(dialog.filesOnlyCheck)  # ...no, keep it: files only
    click(_remove_button(dialog))

    assert dialog.result() == QDialog.DialogCode.Accepted
    answer = dialog.parameters()
    assert answer.files_only and not answer.unregister_shared_replicas


def test_unticking_files_only_unregisters_the_shared_replicas(show):
    plan = _plan()
    plan.geodatabases[0].copies.append("Demo.gpkg was made in /maps/old and has been moved.")
    dialog = show(plan)

    click(dialog.filesOnlyCheck)
    click(_remove_button(dialog))

    answer = dialog.parameters()
    assert not answer.files_only and answer.unregister_shared_replicas


def test_no_copy_no_copy_question(show):
    dialog = show(_plan())
    assert not dialog.copyGroup.isVisible()
    click(_remove_button(dialog))
    answer = dialog.parameters()
    assert not answer.files_only and not answer.unregister_shared_replicas
