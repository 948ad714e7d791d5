"""Signing in, browsing and signing out through the panel, as a user: real widgets clicked,
a real browser (headless chromium) on the portal's sign-in page."""

from __future__ import annotations

import threading

import pytest
from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QApplication, QDialogButtonBox

from plugin.gui.dock import OfflineMapSyncDock
from plugin.sign_in import current_account, sign_out, store_sign_in
from plugin.task import wait_for_task
from tests.chromium import BrowserUser
from tests.featureservice.oauth import DEFAULT_CLIENT_ID
from tests.featureservice.seed import DEMO_WEBMAP_ID
from tests.test_gui_auth import MASTER_PASSWORD
from tests.test_gui_auth import plain_http_on_loopback as _plain_http_fixture
from tests.test_sign_in_browser import _signed_in_with_the_form, revoked_on_the_portal

# The reference portal speaks plain http on 127.0.0.1: allowed for that host, as a user would.
plain_http_on_loopback = _plain_http_fixture

WAIT = 120


@pytest.fixture
def dock(qgis_iface, qgis_new_project):
    manager = QgsApplication.authManager()
    assert manager.setMasterPassword(MASTER_PASSWORD, True)
    sign_out()
    panel = OfflineMapSyncDock(qgis_iface)
    yield panel
    if panel.task is not None:
        panel.task.cancel()
        wait_for_task(panel.task, WAIT)
    sign_out()
    QgsProject.instance().clear()
    panel.deleteLater()


def when_shown(object_name: str, action) -> None:
    """Run ``action(widget)`` once the top-level widget ``object_name`` is visible (a modal
    dialog the next click opens)."""
    timer = QTimer()

    def poll():
        for widget in QApplication.topLevelWidgets():
            if widget.objectName() == object_name and widget.isVisible():
                timer.stop()
                try:
                    action(widget)
                except BaseException as error:  # a failed step must not leave the dialog open
                    when_shown.errors.append(error)
                    widget.close()
                return

    timer.timeout.connect(poll)
    timer.start(50)
    when_shown.timers.append(timer)  # keep it alive until it fired


when_shown.timers = []
when_shown.errors = []


def click(button) -> None:
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)


def type_into(edit, text: str) -> None:
    edit.clear()
    QTest.keyClicks(edit, text)


def test_sign_in_browse_take_offline_and_sign_out_from_the_panel(
    dock, chromium, secured_reference_server, plain_http_on_loopback, tmp_path
):
    server = secured_reference_server
    bar = dock.signInBar
    assert bar.accountLabel.text() == "Not signed in to a portal."
    browser_user = BrowserUser(chromium, "alice", "alice-secret")
    bar.open_browser = browser_user

    def sign_in(dialog):
        type_into(dialog.portalEdit, server.portal_url)
        type_into(dialog.clientIdEdit, DEFAULT_CLIENT_ID)
        click(dialog.signInButton)

    when_shown("SignInDialog", sign_in)
    click(bar.signInButton)  # returns when the dialog closed itself after signing in

    assert "You can close this window" in browser_user.wait()
    host = server.portal_url.split("/")[2]
    assert bar.accountLabel.text() == f"Signed in: Alice Tester (alice) at {host}"
    assert bar.signOutButton.isVisible() or not dock.isVisible()
    account = current_account()
    assert account.username == "alice"

    chosen, listed = [], []

    def choose_demo_map(browse):
        searched = []

        def pick():
            if browse.task is not None:  # still reading the portal
                return
            if not searched:
                # "My content" lists alice's own map; the demo map is found by searching.
                listed.extend(
                    browse.itemsList.item(i).text() for i in range(browse.itemsList.count())
                )
                type_into(browse.searchEdit, "demo")
                click(browse.searchButton)
                searched.append(True)
                return
            entries = [
                browse.itemsList.item(i)
                for i in range(browse.itemsList.count())
                if browse.itemsList.item(i).text().startswith("Demo offline map\n")
            ]
            if not entries:
                return
            timer.stop()
            entry = entries[0]
            chosen.append(entry.text())
            assert not entry.icon().isNull()  # the thumbnail
            rect = browse.itemsList.visualItemRect(entry)
            QTest.mouseClick(
                browse.itemsList.viewport(), Qt.MouseButton.LeftButton, pos=rect.center()
            )
            click(browse.chooseButton)

        timer = QTimer()
        timer.timeout.connect(pick)
        timer.start(50)
        when_shown.timers.append(timer)

    filled = {}

    def take_offline(dialog):
        when_shown("BrowseDialog", choose_demo_map)
        click(dialog.browseButton)  # returns once a map was chosen
        filled.update(
            portal=dialog.portalEdit.text(),
            item=dialog.itemEdit.text(),
            authcfg=dialog.authSelect.configId(),
            title=dialog.titleEdit.text(),
        )
        type_into(dialog.folderWidget.lineEdit(), str(tmp_path / "map"))
        # The token dies just as the server is asked for the data: the job renews it.
        server.inject_fault("createReplica", "expire_tokens")
        click(dialog.buttonBox.button(QDialogButtonBox.StandardButton.Ok))
        if dialog.isVisible():  # refused: keep what it said, close it so the test can fail
            filled["refused"] = dialog.messageLabel.text()
            click(dialog.buttonBox.button(QDialogButtonBox.StandardButton.Cancel))

    when_shown("TakeOfflineDialog", take_offline)
    click(dock.takeOfflineButton)

    assert [text.split("\n")[0] for text in listed] == ["Alice's private survey"]
    assert when_shown.errors == []
    assert chosen and "Web Map · seed · modified 2024-05-01" in chosen[0]
    assert filled == {
        "portal": server.portal_url,
        "item": DEMO_WEBMAP_ID,
        "authcfg": account.authcfg,
        "title": "Demo offline map",
    }
    assert dock.task is not None and wait_for_task(dock.task, WAIT)
    assert dock.last_error is None, dock.last_error
    assert dock.offline_map is not None and dock.offline_map.geodatabases
    assert server.oauth.grants["refresh_token"] == 1

    click(bar.signOutButton)
    assert bar.accountLabel.text() == "Not signed in to a portal."
    assert current_account() is None
    assert account.authcfg not in QgsApplication.authManager().configIds()


def test_a_wrong_portal_address_is_explained_in_the_dialog_and_nothing_is_stored(dock):
    bar = dock.signInBar
    seen = []

    def try_bad_address(dialog):
        type_into(dialog.portalEdit, "ftp://gis.example.com")
        click(dialog.signInButton)
        seen.append(dialog.messageLabel.text())
        click(dialog.cancelButton)

    when_shown("SignInDialog", try_bad_address)
    click(bar.signInButton)

    assert "is not a portal address" in seen[0]
    assert bar.accountLabel.text() == "Not signed in to a portal."
    assert current_account() is None


@pytest.fixture
def signed_in_panel(qgis_iface, qgis_new_project, secured_reference_server):
    """The panel as QGIS opens it while alice is signed in (through the portal's form)."""
    manager = QgsApplication.authManager()
    assert manager.setMasterPassword(MASTER_PASSWORD, True)
    sign_out()
    authcfg = store_sign_in(_signed_in_with_the_form(secured_reference_server))
    panel = OfflineMapSyncDock(qgis_iface)
    panel.show()
    yield panel, authcfg
    sign_out()
    panel.deleteLater()


def test_signing_out_forgets_the_sign_in_at_once_while_a_slow_portal_revokes_it(
    signed_in_panel, secured_reference_server, plain_http_on_loopback
):
    dock, authcfg = signed_in_panel
    server = secured_reference_server
    bar = dock.signInBar
    assert bar.accountLabel.text().startswith("Signed in: Alice Tester (alice)")
    assert server.oauth.refresh_token_count() == 1
    # The portal holds the revoke request until the test lets it answer (at most 5 s, less
    # than the client waits, so a sign-out that waited for it would see it answered).
    release = threading.Event()
    server.inject_fault("oauth_revoke", "hold", release=release, seconds=5)

    try:
        click(bar.signOutButton)
        signed_out = bar.accountLabel.text()
        button_shown = bar.signOutButton.isVisible()
        forgotten = current_account() is None and (
            authcfg not in QgsApplication.authManager().configIds()
        )
        unanswered = server.oauth.refresh_token_count() == 1
    finally:
        release.set()

    assert signed_out == "Not signed in to a portal."
    assert not button_shown
    assert forgotten
    assert unanswered  # signed out before the portal answered the revoke
    assert revoked_on_the_portal(server)


def test_a_portal_that_cannot_revoke_is_logged_without_secrets_and_signing_out_still_works(
    signed_in_panel, secured_reference_server, plain_http_on_loopback
):
    from plugin import message_log
    from tests.test_gui_logging import LogPanel

    dock, authcfg = signed_in_panel
    server = secured_reference_server
    refresh_token = sign_in_of_stored(authcfg).refresh_token
    log = LogPanel()
    message_log.install_message_log_handler()
    try:
        server.inject_fault("oauth_revoke", "http503")
        click(dock.signInBar.signOutButton)
        assert dock.signInBar.accountLabel.text() == "Not signed in to a portal."
        logged = log.wait_for("did not confirm that it revoked", timeout=30)
    finally:
        message_log.remove_message_log_handler()
        log.close()

    assert current_account() is None
    assert len(logged) == 1 and "alice" in logged[0]
    assert not any(refresh_token in text for text, _ in log.messages)
    assert server.oauth.refresh_token_count() == 1  # the portal never got to revoke it


def sign_in_of_stored(authcfg: str):
    from qgis.core import QgsAuthMethodConfig

    from plugin.sign_in import sign_in_of

    config = QgsAuthMethodConfig()
    assert QgsApplication.authManager().loadAuthenticationConfig(authcfg, config, True)
    return sign_in_of(config)
