"""GUI tests act as a user: they find widgets, type, pick, click, and answer modal questions.

Nothing here calls a dialog's ``accept()``/``reject()``/``done()`` or a private slot: a test
that did would pass while the dialog's own buttons do nothing. Modal dialogs (``exec()``) are
answered from a timer that waits for the dialog to appear, acts on it like a user, and records
any failure so that the test reports it instead of hanging.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from qgis.PyQt.QtCore import QPoint, Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import (
    QAbstractButton,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialogButtonBox,
    QFileDialog,
    QLineEdit,
    QRadioButton,
    QWidget,
)

LEFT = Qt.MouseButton.LeftButton
NO_MODIFIER = Qt.KeyboardModifier.NoModifier
WAIT = 60


def process_events(seconds: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.005)


def click(widget: QWidget, pos: QPoint | None = None) -> None:
    """Click ``widget`` (its centre, or ``pos``) as a user would: it must be shown and enabled."""
    assert widget.isVisible(), f"{widget.objectName() or widget} is not on screen"
    assert widget.isEnabled(), f"{widget.objectName()} is disabled"
    if pos is None and isinstance(widget, (QCheckBox, QRadioButton)):
        pos = QPoint(8, widget.height() // 2)  # on the box, not on the empty space after the text
    QTest.mouseClick(widget, LEFT, NO_MODIFIER, pos if pos is not None else QPoint())
    QApplication.processEvents()


def click_item(view, item) -> None:
    """Click an item of a list/tree/table widget (selects it, makes it current)."""
    view.scrollToItem(item)
    rect = view.visualItemRect(item)
    assert rect.isValid(), "the item is not shown"
    click(view.viewport(), rect.center())


def type_into(edit: QWidget, text: str) -> None:
    """Replace the text of a line edit (or a QgsFileWidget) by typing ``text``."""
    if not isinstance(edit, QLineEdit) and hasattr(edit, "lineEdit"):
        edit = edit.lineEdit()
    click(edit)
    QTest.keyClick(edit, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(edit, Qt.Key.Key_Delete)
    QTest.keyClicks(edit, text)


def type_lines(edit: QWidget, lines: list[str]) -> None:
    """Type ``lines`` into a plain-text edit, one Return between them."""
    click(edit)
    QTest.keyClick(edit, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(edit, Qt.Key.Key_Delete)
    for index, line in enumerate(lines):
        if index:
            QTest.keyClick(edit, Qt.Key.Key_Return)
        QTest.keyClicks(edit, line)


def choose(combo: QComboBox, text: str) -> None:
    """Pick the entry reading ``text`` with the keyboard (Home, then Down), as a user can."""
    index = combo.findText(text)
    assert index >= 0, f"{text!r} is not among {[combo.itemText(i) for i in range(combo.count())]}"
    assert combo.isVisible() and combo.isEnabled(), combo.objectName()
    combo.setFocus()
    QTest.keyClick(combo, Qt.Key.Key_Home)
    for _ in range(index):
        QTest.keyClick(combo, Qt.Key.Key_Down)
    QApplication.processEvents()
    assert combo.currentText() == text


def button_box_button(box: QDialogButtonBox, which) -> QAbstractButton:
    button = box.button(which)
    assert button is not None, f"no {which} button"
    return button


def button_named(widget: QWidget, text: str) -> QAbstractButton:
    """The visible button of ``widget`` whose text (without the & shortcut marks) is ``text``."""
    found = [
        button
        for button in widget.findChildren(QAbstractButton)
        if button.isVisible() and button.text().replace("&", "") == text
    ]
    assert found, f"no button {text!r} in {type(widget).__name__}: " + ", ".join(
        b.text() for b in widget.findChildren(QAbstractButton) if b.isVisible()
    )
    return found[0]


class ModalAnswer:
    """Answers the next modal dialog: ``act(dialog)`` runs once it is shown.

    Use as a context manager around the click that opens it; leaving the block re-raises what
    went wrong inside ``act`` (the dialog is closed with Escape so that the test never hangs).
    """

    def __init__(self, act: Callable[[QWidget], None], kind: type | None = None) -> None:
        self.act = act
        self.kind = kind
        self.dialog: QWidget | None = None
        self.seen: list[QWidget] = []
        self.error: BaseException | None = None
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._poll)

    def __enter__(self) -> ModalAnswer:
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.wait()
        self.timer.stop()
        if exc[0] is not None:
            return
        if self.error is not None:
            raise self.error
        if self.dialog is None:
            raise AssertionError("the expected dialog never appeared")

    def wait(self, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while self.dialog is None and time.monotonic() < deadline and self.error is None:
            process_events(0.02)

    def _poll(self) -> None:
        widget = QApplication.activeModalWidget()
        if widget is None or not widget.isVisible() or widget in self.seen:
            return
        if self.kind is not None and not isinstance(widget, self.kind):
            return
        self.timer.stop()
        self.dialog = widget
        self.seen.append(widget)
        try:
            process_events(0.02)
            self.act(widget)
        except BaseException as error:  # noqa: BLE001 (reported when the block ends)
            self.error = error
            if widget.isVisible():
                QTest.keyClick(widget, Qt.Key.Key_Escape)


def answering(act: Callable[[QWidget], None], kind: type | None = None) -> ModalAnswer:
    return ModalAnswer(act, kind)


def press(text: str) -> Callable[[QWidget], None]:
    """An answer that clicks the dialog's button reading ``text`` (e.g. "Save", "Yes")."""

    def act(dialog: QWidget) -> None:
        click(button_named(dialog, text))

    return act


def choose_folder(folder: Path | str) -> Callable[[QWidget], None]:
    """An answer to a Qt folder dialog: type the folder's path, then click Choose."""

    def act(dialog: QWidget) -> None:
        assert isinstance(dialog, QFileDialog), type(dialog)
        edit = dialog.findChild(QLineEdit, "fileNameEdit")
        type_into(edit, str(folder))
        box = dialog.findChild(QDialogButtonBox, "buttonBox")
        click(box.button(QDialogButtonBox.StandardButton.Open))

    return act


def choose_file(path: Path | str, accept: str = "Open") -> Callable[[QWidget], None]:
    """An answer to a Qt file dialog: type the file's path, then click ``accept`` (Open, Save)."""

    def act(dialog: QWidget) -> None:
        assert isinstance(dialog, QFileDialog), type(dialog)
        type_into(dialog.findChild(QLineEdit, "fileNameEdit"), str(path))
        click(button_named(dialog.findChild(QDialogButtonBox, "buttonBox"), accept))

    return act


def wait_until_idle(dock, timeout: float = WAIT) -> None:
    """Wait until the panel runs no task (a task may start another, e.g. a retry)."""
    from plugin.task import wait_for_task

    deadline = time.monotonic() + timeout
    while dock.task is not None and time.monotonic() < deadline:
        wait_for_task(dock.task, max(0.1, deadline - time.monotonic()))
        process_events(0.02)
    assert dock.task is None, "the panel's task did not finish in time"
