"""The "Sign in to ArcGIS" dialog (layout in ``ui/sign_in_dialog.ui``): an ArcGIS account in
the browser (OAuth 2.0), an API key, or a built-in account; the result goes to QGIS's
authentication database (``plugin/sign_in.py``) only once it worked."""

from __future__ import annotations

from typing import Callable

from qgis.core import QgsSettings
from qgis.PyQt import sip, uic
from qgis.PyQt.QtCore import QUrl, pyqtSignal
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QWidget

from ..auth import plain_http_hosts
from ..core.errors import OfflineMapSyncError
from ..core.oauth import AuthorizationCodeFlow, SignInJob
from ..core.portal import portal_rest_url
from ..resources import tr, ui_path
from ..sign_in import (
    SETTINGS_CLIENT_ID,
    SETTINGS_PORTAL,
    current_account,
    store_account,
    store_api_key,
    store_sign_in,
)
from ..task import start_job_task

FORM_CLASS, _ = uic.loadUiType(ui_path("sign_in_dialog.ui"))


def open_in_system_browser(url: str) -> None:
    QDesktopServices.openUrl(QUrl(url))


class SignInDialog(QDialog, FORM_CLASS):
    """Signs in and closes itself once the sign-in is stored; ``account`` is then set.

    ``open_browser(url)`` shows the portal's sign-in page (the system browser by default);
    it is always called on the main thread.
    """

    _browser_wanted = pyqtSignal(str)

    def __init__(
        self,
        parent: QWidget | None = None,
        open_browser: Callable[[str], object] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setupUi(self)
        self.open_browser = open_browser or open_in_system_browser
        self.task = None
        self.account = None
        settings = QgsSettings()
        self.portalEdit.setText(settings.value(SETTINGS_PORTAL, "") or "")
        self.clientIdEdit.setText(settings.value(SETTINGS_CLIENT_ID, "") or "")
        self.signInButton = self.buttonBox.button(QDialogButtonBox.StandardButton.Ok)
        self.signInButton.setText(tr("Sign in"))
        self.signInButton.setObjectName("signInButton")
        self.cancelButton = self.buttonBox.button(QDialogButtonBox.StandardButton.Cancel)
        self.cancelButton.setObjectName("cancelButton")
        self.buttonBox.accepted.connect(self.accept)
        self.buttonBox.rejected.connect(self.reject)
        # The job asks for the browser from its thread; the signal brings it to this one.
        self._browser_wanted.connect(lambda url: self.open_browser(url))

    # The buttons: Sign in starts, Cancel stops a running sign-in or closes the dialog.
    def accept(self) -> None:  # noqa: D102 (Qt API)
        if self.task is not None:
            return
        try:
            portal_url = portal_rest_url(self.portalEdit.text())
        except OfflineMapSyncError as error:
            self.messageLabel.setText(str(error))
            return
        QgsSettings().setValue(SETTINGS_PORTAL, self.portalEdit.text().strip())
        tab = self.methodTabs.currentWidget()
        if tab is self.oauthTab:
            self._start_browser_sign_in(portal_url)
            return
        try:
            if tab is self.apiKeyTab:
                store_api_key(portal_url, self.apiKeyEdit.text(), plain_http_hosts())
            else:
                store_account(
                    portal_url,
                    self.usernameEdit.text(),
                    self.passwordEdit.text(),
                    plain_http_hosts(),
                )
        except OfflineMapSyncError as error:
            self.messageLabel.setText(str(error))
            return
        self._signed_in()

    def reject(self) -> None:  # noqa: D102 (Qt API)
        if self.task is not None:
            self.messageLabel.setText(tr("Cancelling…"))
            self.task.cancel()
            return
        super().reject()

    def _start_browser_sign_in(self, portal_url: str) -> None:
        client_id = self.clientIdEdit.text().strip()
        try:
            flow = AuthorizationCodeFlow(portal_url, client_id, plain_http_hosts=plain_http_hosts())
        except OfflineMapSyncError as error:
            self.messageLabel.setText(str(error))
            return
        QgsSettings().setValue(SETTINGS_CLIENT_ID, client_id)
        self.messageLabel.setText(
            tr("Sign in in your web browser, then come back here. Cancel stops waiting.")
        )
        self.signInButton.setEnabled(False)
        job = SignInJob(flow, self._browser_wanted.emit)
        self.task = start_job_task(tr("Signing in to ArcGIS"), job, on_done=self._finished)

    def _finished(self, task) -> None:
        if sip.isdeleted(self):
            return
        self.task = None
        self.signInButton.setEnabled(True)
        if not task.succeeded:
            self.messageLabel.setText(str(task.error) if task.error else tr("Cancelled."))
            return
        try:
            store_sign_in(task.result)
        except OfflineMapSyncError as error:
            self.messageLabel.setText(str(error))
            return
        self._signed_in()

    def _signed_in(self) -> None:
        self.account = current_account()
        super().accept()
