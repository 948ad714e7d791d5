"""The panel's sign-in row: who is signed in where, "Sign in…" and "Sign out"."""

from __future__ import annotations

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from ..core.errors import OfflineMapSyncError
from ..resources import tr
from ..sign_in import sign_out, signed_in_as


class SignInBar(QWidget):
    """Shows the signed-in account; ``open_browser`` (None: the system browser) is handed to
    the sign-in dialog."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("signInBar")
        self.open_browser = None
        self.accountLabel = QLabel(self)
        self.accountLabel.setObjectName("accountLabel")
        self.accountLabel.setTextFormat(Qt.TextFormat.PlainText)
        self.accountLabel.setWordWrap(True)
        self.signInButton = QPushButton(tr("Sign in…"), self)
        self.signInButton.setObjectName("signInButton")
        self.signInButton.setToolTip(tr("Sign in to ArcGIS Online or an ArcGIS Enterprise portal"))
        self.signOutButton = QPushButton(tr("Sign out"), self)
        self.signOutButton.setObjectName("signOutButton")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.accountLabel, 1)
        layout.addWidget(self.signInButton)
        layout.addWidget(self.signOutButton)
        self.signInButton.clicked.connect(self.sign_in)
        self.signOutButton.clicked.connect(self.sign_out)
        self.refresh()

    def refresh(self) -> None:
        who = signed_in_as()
        self.accountLabel.setText(
            tr("Signed in: {0}").format(who) if who else tr("Not signed in to a portal.")
        )
        self.signOutButton.setVisible(bool(who))

    def sign_in(self) -> None:
        from .sign_in_dialog import SignInDialog

        SignInDialog(self, self.open_browser).exec()
        self.refresh()

    def sign_out(self) -> None:
        try:
            sign_out()
        except OfflineMapSyncError as error:
            self.accountLabel.setText(str(error))
            return
        self.refresh()
