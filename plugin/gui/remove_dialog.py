"""The "Remove offline map" confirmation (layout in ``ui/remove_dialog.ui``).

Shows what a removal involves, from the core's ``RemovalPlan``: the replicas unregistered, the
folder deleted, and by name every layer whose local edits were never uploaded. Those edits are
lost, so the Remove button stays disabled until the user ticks that they are discarded.
When the map may be a copy of another one (the same replicas), it says so and offers to remove
the files only, ticked by default: unregistering would stop the other copy from syncing.
"""

from __future__ import annotations

from qgis.PyQt import uic
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QWidget

from ..core.removal import RemovalParameters, RemovalPlan
from ..resources import tr, ui_path
from .formatting import escape

FORM_CLASS, _ = uic.loadUiType(ui_path("remove_dialog.ui"))


class RemoveDialog(QDialog, FORM_CLASS):
    """Asks to confirm removing an offline map; ``parameters()`` is the answer."""

    def __init__(
        self,
        plan: RemovalPlan,
        layers_in_project: int = 0,
        parent: QWidget | None = None,
        unsaved_layers: list[str] | tuple[str, ...] = (),
    ):
        super().__init__(parent)
        self.setupUi(self)
        self.plan = plan
        #: Names of the map's layers with edits not yet saved in QGIS (lost with the layers).
        self.unsaved_layers = list(unsaved_layers)
        self.remove_button = self.buttonBox.button(QDialogButtonBox.StandardButton.Ok)
        self.remove_button.setText(tr("Remove"))
        self.questionLabel.setText(self._question())

        self.pendingList.clear()
        for line in self.pending_lines():
            self.pendingList.addItem(line)
        self.pendingGroup.setVisible(self.needs_confirmation)
        self.discardCheck.setText(self._discard_text())
        self.discardCheck.toggled.connect(self._update_enabled)

        copies = plan.copies
        self.copyGroup.setVisible(bool(copies))
        self.copyLabel.setText(
            "\n".join(copies)
            + "\n"
            + tr(
                "Unregistering its replicas would stop the other copy from syncing. Keep them "
                "registered and remove the files only, unless the other copy is gone."
            )
            if copies
            else ""
        )

        details = []
        if plan.conflicts_total:
            details.append(
                tr("The conflict log's {0} entries are deleted too.").format(plan.conflicts_total)
            )
        if layers_in_project:
            details.append(
                tr("Its {0} layers are removed from the project.").format(layers_in_project)
            )
        self.detailsLabel.setText(" ".join(details))
        self.detailsLabel.setVisible(bool(details))
        self._update_enabled()

    def _question(self) -> str:
        plan = self.plan
        where = escape(str(plan.folder)) if plan.folder else ""
        text = tr("Remove the offline map <b>{0}</b>?").format(escape(plan.title)) + "<br>"
        if plan.copies:
            text += tr("Its files are deleted from {0}; its replicas: see below.").format(where)
        elif len(plan.replicas) == 1:
            text += tr(
                "Its replica is unregistered from its feature service and its files are deleted "
                "from {0}."
            ).format(where)
        elif plan.replicas:
            text += tr(
                "Its {0} replicas are unregistered from their feature services and its files "
                "are deleted from {1}."
            ).format(len(plan.replicas), where)
        else:
            text += tr("Its files are deleted from {0}.").format(where)
        return text + " " + tr("This cannot be undone.")

    def pending_lines(self) -> list[str]:
        """One line per layer with pending edits (and per unreadable geodatabase)."""
        lines = []
        for gdb in self.plan.geodatabases:
            for title, count in gdb.pending.items():
                lines.append(tr("{0}: {1} ({2})").format(title, _edits(count), gdb.path.name))
            if gdb.error:
                lines.append(tr("{0} cannot be read: {1}").format(gdb.path.name, gdb.error))
        lines.extend(
            tr("{0}: edits not saved in QGIS").format(name) for name in self.unsaved_layers
        )
        return lines

    @property
    def needs_confirmation(self) -> bool:
        """True when something unrecoverable (edits, unreadable files) goes with the map."""
        return self.plan.needs_discard_confirmation or bool(self.unsaved_layers)

    def _discard_text(self) -> str:
        total = self.plan.pending_total
        if total == 1 and not self.unsaved_layers:
            return tr("Discard this edit")
        if total:
            return tr("Discard these {0} edits").format(total)
        if self.unsaved_layers:
            return tr("Discard these edits")
        return tr("Remove it although its edits cannot be checked")

    def _update_enabled(self, *_args) -> None:
        confirmed = not self.needs_confirmation or self.discardCheck.isChecked()
        self.remove_button.setEnabled(confirmed)

    def parameters(self) -> RemovalParameters:
        """What the user confirmed (only meaningful after the dialog was accepted)."""
        copies = bool(self.plan.copies)
        files_only = copies and self.filesOnlyCheck.isChecked()
        return RemovalParameters(
            discard_pending_edits=self.plan.needs_discard_confirmation
            and self.discardCheck.isChecked(),
            files_only=files_only,
            unregister_shared_replicas=copies and not files_only,
        )


def _edits(count: int) -> str:
    return tr("1 edit") if count == 1 else tr("{0} edits").format(count)
