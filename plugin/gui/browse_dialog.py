"""The "Choose a map" dialog (layout in ``ui/browse_dialog.ui``): the signed-in user's web maps
and feature services — own content, groups, organisation, search — with title, owner,
modified date and thumbnail; and the "Browse…" button that fills the Take-offline dialog."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import partial

from qgis.PyQt import sip, uic
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon, QPixmap
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QListWidgetItem,
    QPushButton,
    QWidget,
)

from ..auth import credentials_from_auth_config
from ..core.errors import OfflineMapSyncError
from ..core.portal import PortalBrowser, PortalItem
from ..core.rest import ArcGISClient
from ..resources import tr, ui_path
from ..sign_in import KIND_API_KEY, Account, current_account
from ..task import CallJob, start_job_task

FORM_CLASS, _ = uic.loadUiType(ui_path("browse_dialog.ui"))
#: Thumbnails are fetched for the first items of a listing only.
MAX_THUMBNAILS = 60
_MINE, _GROUP, _ORG, _SEARCH = "mine", "group", "org", "search"


def _read_listing(browser: PortalBrowser, account: Account, source: str, value: str, text: str):
    """(user or None, [(item, thumbnail bytes or None)]) for a source; runs in a task."""
    me = browser.me() if account.kind != KIND_API_KEY else None
    if source == _MINE:
        items = browser.my_items(me.username if me else account.username)
    elif source == _GROUP:
        items = browser.group_items(value)
    elif source == _ORG:
        items = browser.organisation_items(value or (me.org_id if me else ""))
    else:
        items = browser.search(text)
    return me, [
        (item, browser.thumbnail(item) if index < MAX_THUMBNAILS else None)
        for index, item in enumerate(items)
    ]


class BrowseDialog(QDialog, FORM_CLASS):
    """Lists what ``account`` can take offline; ``chosen`` is the picked :class:`PortalItem`."""

    def __init__(self, account: Account, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setupUi(self)
        self.account = account
        self.task = None
        self.chosen: PortalItem | None = None
        self._groups_listed = False
        credentials = credentials_from_auth_config(account.authcfg, account.portal_url)
        self.browser = PortalBrowser(ArcGISClient(credentials), account.portal_url)
        self.accountLabel.setText(tr("Signed in: {0}").format(account.describe()))
        self.chooseButton = self.buttonBox.button(QDialogButtonBox.StandardButton.Ok)
        self.chooseButton.setText(tr("Choose"))
        self.chooseButton.setObjectName("chooseButton")
        self.buttonBox.accepted.connect(self.accept)
        self.buttonBox.rejected.connect(self.reject)
        if account.kind != KIND_API_KEY:  # an API key has no user, only search
            self.sourceCombo.addItem(tr("My content"), _MINE)
            self.sourceCombo.addItem(tr("My organisation"), _ORG)
        self.sourceCombo.addItem(tr("Search results"), _SEARCH)
        self.sourceCombo.activated.connect(lambda _index: self.list_items())
        self.searchButton.clicked.connect(self.search)
        self.searchEdit.returnPressed.connect(self.search)
        self.itemsList.itemDoubleClicked.connect(lambda _item: self.accept())
        self.list_items()

    def search(self) -> None:
        self.sourceCombo.setCurrentIndex(self.sourceCombo.findData(_SEARCH))
        self.list_items()

    def list_items(self):
        """List the chosen source in a background task (None when one is running)."""
        if self.task is not None:
            return None
        # Sources are "mine", "org", "search" or "group:<id>".
        source, _sep, value = str(self.sourceCombo.currentData()).partition(":")
        self.messageLabel.setText(tr("Reading the portal…"))
        self.itemsList.clear()
        job = CallJob(
            partial(
                _read_listing, self.browser, self.account, source, value, self.searchEdit.text()
            )
        )
        self.task = start_job_task(tr("Listing maps"), job, on_done=self._listed)
        return self.task

    def _listed(self, task) -> None:
        if sip.isdeleted(self):
            return
        self.task = None
        if not task.succeeded:
            self.messageLabel.setText(str(task.error) if task.error else tr("Cancelled."))
            return
        me, rows = task.result
        if me is not None and not self._groups_listed:
            self._groups_listed = True
            for index, group in enumerate(me.groups):
                self.sourceCombo.insertItem(
                    1 + index, tr("Group: {0}").format(group.title), f"{_GROUP}:{group.group_id}"
                )
        for item, thumbnail in rows:
            entry = QListWidgetItem(_item_text(item))
            entry.setData(Qt.ItemDataRole.UserRole, item)
            entry.setToolTip(item.snippet)
            if thumbnail:
                pixmap = QPixmap()
                if pixmap.loadFromData(thumbnail):
                    entry.setIcon(QIcon(pixmap))
            self.itemsList.addItem(entry)
        self.messageLabel.setText("" if rows else tr("No web maps or feature services here."))

    def accept(self) -> None:  # noqa: D102 (Qt API)
        entry = self.itemsList.currentItem()
        if entry is None:
            self.messageLabel.setText(tr("Choose a map in the list."))
            return
        self.chosen = entry.data(Qt.ItemDataRole.UserRole)
        super().accept()


def _item_text(item: PortalItem) -> str:
    modified = (
        datetime.fromtimestamp(item.modified / 1000, tz=timezone.utc).strftime("%Y-%m-%d")
        if item.modified
        else "?"
    )
    return tr("{0}\n{1} · {2} · modified {3}").format(
        item.title, item.item_type, item.owner, modified
    )


def add_browse_button(dialog) -> QPushButton:
    """A "Browse…" button next to the Take-offline dialog's item ID field: it lists the
    signed-in portal's maps (signing in first if nobody is) and fills the dialog."""
    button = QPushButton(tr("Browse…"), dialog)
    button.setObjectName("browseButton")
    button.setToolTip(tr("Choose a web map or feature service from your portal"))
    layout = dialog.itemEdit.parentWidget().layout()
    if isinstance(layout, QGridLayout):
        row, column, _rows, _columns = layout.getItemPosition(layout.indexOf(dialog.itemEdit))
        layout.addWidget(button, row, column + 1)
    else:
        dialog.layout().addWidget(button)
    button.clicked.connect(partial(browse_into, dialog))
    return button


def browse_into(dialog) -> bool:
    """Let the user pick an item and fill ``dialog`` (a TakeOfflineDialog) with it."""
    from .sign_in_dialog import SignInDialog

    try:
        account = current_account()
        if account is None:
            sign_in = SignInDialog(dialog)
            if not sign_in.exec():
                return False
            account = sign_in.account
        browse = BrowseDialog(account, dialog)
    except OfflineMapSyncError as error:
        dialog.messageLabel.setText(str(error))
        return False
    if not browse.exec() or browse.chosen is None:
        return False
    item = browse.chosen
    if item.is_web_map:
        dialog.webmapRadio.setChecked(True)
        dialog.portalEdit.setText(account.portal_url)
        dialog.itemEdit.setText(item.item_id)
    else:
        dialog.servicesRadio.setChecked(True)
        dialog.servicesEdit.setPlainText(item.url)
    dialog.authSelect.setConfigId(account.authcfg)
    if not dialog.titleEdit.text().strip():
        dialog.titleEdit.setText(item.title)
    return True
