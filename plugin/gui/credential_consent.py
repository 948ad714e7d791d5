"""Asking the user before a credential is used for a server it has not been used with."""

from __future__ import annotations

from typing import Iterable

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QMessageBox, QWidget

from ..auth import credentials_from_auth_config
from ..core.errors import CancelledError, SiteNotApprovedError
from ..core.rest import CredentialProvider
from ..resources import tr


def credentials_with_consent(
    parent: QWidget, authcfg: str | None, url: str, also_for: Iterable[str] = ()
) -> CredentialProvider | None:
    """:func:`~plugin.auth.credentials_from_auth_config`, asking the user first when the
    credential would go to a server it has not been used with (an offline map copied from
    someone else may name any server). Raises CancelledError when the user says no."""
    also_for = list(also_for)
    try:
        return credentials_from_auth_config(authcfg, url, also_for=also_for)
    except SiteNotApprovedError as error:
        if not _user_approves(parent, error):
            raise CancelledError(
                tr("Not started: the credential '{0}' was not approved for {1}.").format(
                    error.credential, ", ".join(str(site) for site in error.sites)
                )
            ) from None
    return credentials_from_auth_config(authcfg, url, also_for=also_for, approve_new_sites=True)


def _user_approves(parent: QWidget, error: SiteNotApprovedError) -> bool:
    box = QMessageBox(parent)
    box.setObjectName("credentialConsentBox")
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle(tr("Use this credential?"))
    # The server names come from the offline map or the user's input: plain text only.
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setText(
        tr(
            "Use the credential '{0}' for {1}?\n\nIt has not been used with this server before. "
            "Only answer Yes if you trust it: an offline map copied from someone else may name "
            "any server, and it would receive your sign-in."
        ).format(error.credential, ", ".join(str(site) for site in error.sites))
    )
    box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    box.setDefaultButton(QMessageBox.StandardButton.No)
    return box.exec() == QMessageBox.StandardButton.Yes
