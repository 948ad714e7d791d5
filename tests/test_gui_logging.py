"""The core's Python logging reaches QGIS's log panel ("Offline Map Sync" tab) while the plugin
is loaded, from the main thread and from background tasks, without secrets, exactly once."""

from __future__ import annotations

import importlib
import logging
import time

import pytest
from qgis.core import Qgis, QgsApplication

from plugin import message_log
from plugin.main import OfflineMapSyncPlugin
from plugin.task import CallJob, start_job_task, wait_for_task

TAG = "Offline Map Sync"
CORE_LOGGER = f"{message_log.PACKAGE_LOGGER}.core.rest"


class LogPanel:
    """What QGIS's log panel receives under the plugin's tag."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, object]] = []
        QgsApplication.messageLog().messageReceived.connect(self._received)

    def _received(self, message, tag, level) -> None:
        if tag == TAG:
            self.messages.append((message, level))

    def texts(self, containing: str) -> list[str]:
        return [m for m, _ in self.messages if containing in m]

    def wait_for(self, containing: str, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not self.texts(containing) and time.monotonic() < deadline:
            QgsApplication.processEvents()
            time.sleep(0.01)
        return self.texts(containing)

    def close(self) -> None:
        QgsApplication.messageLog().messageReceived.disconnect(self._received)


@pytest.fixture
def log_panel(qgis_app):
    panel = LogPanel()
    yield panel
    panel.close()
    message_log.remove_message_log_handler()


@pytest.fixture
def loaded_plugin(qgis_iface, log_panel):
    plugin = OfflineMapSyncPlugin(qgis_iface)
    plugin.initGui()
    yield plugin
    plugin.unload()


def test_a_core_warning_reaches_the_plugin_log_tab_as_a_warning(loaded_plugin, log_panel):
    logging.getLogger(CORE_LOGGER).warning("Could not delete %s", "result.json")

    found = [(m, level) for m, level in log_panel.messages if "Could not delete" in m]
    assert found == [(f"{CORE_LOGGER}: Could not delete result.json", Qgis.MessageLevel.Warning)]


def test_info_messages_are_logged_but_debug_messages_are_not(loaded_plugin, log_panel):
    logger = logging.getLogger(CORE_LOGGER)
    logger.info("Retrying in 0.5s")
    logger.debug("GET http://example/arcgis")

    assert [level for m, level in log_panel.messages if "Retrying" in m] == [Qgis.MessageLevel.Info]
    assert log_panel.texts("GET http://example") == []


def test_an_exception_is_logged_as_critical_with_its_traceback(loaded_plugin, log_panel):
    try:
        raise RuntimeError("broken geodatabase")
    except RuntimeError:
        logging.getLogger(f"{message_log.PACKAGE_LOGGER}.core.sync").exception("Sync failed")

    (message,) = log_panel.texts("Sync failed")
    assert "Traceback" in message and "broken geodatabase" in message
    assert [level for m, level in log_panel.messages if m == message] == [
        Qgis.MessageLevel.Critical
    ]


def test_messages_logged_inside_a_background_task_arrive(loaded_plugin, log_panel):
    def work():
        logging.getLogger(CORE_LOGGER).warning("from the worker thread")
        return True

    task = start_job_task("log from a task", CallJob(work))
    assert wait_for_task(task, 30)
    assert task.succeeded

    assert log_panel.wait_for("from the worker thread") == [
        f"{CORE_LOGGER}: from the worker thread"
    ]


def test_tokens_and_passwords_never_reach_the_log(loaded_plugin, log_panel):
    logging.getLogger(CORE_LOGGER).warning(
        "Request failed: %s", "http://h/arcgis/rest/services?f=json&token=SECRET123&x=1"
    )
    logging.getLogger(CORE_LOGGER).warning("form username=alice&password=alice-secret")

    logged = " ".join(m for m, _ in log_panel.messages)
    assert "SECRET123" not in logged
    assert "alice-secret" not in logged
    assert "token=***" in logged and "password=***" in logged


def test_unload_removes_the_handler_and_restores_the_level(qgis_iface, log_panel):
    logger = logging.getLogger(message_log.PACKAGE_LOGGER)
    level_before = logger.level
    plugin = OfflineMapSyncPlugin(qgis_iface)
    plugin.initGui()
    assert len(message_log.message_log_handlers()) == 1

    plugin.unload()
    logging.getLogger(CORE_LOGGER).warning("after unload")

    assert message_log.message_log_handlers() == []
    assert logger.level == level_before
    assert log_panel.texts("after unload") == []


def test_reloading_the_plugin_leaves_one_handler_and_logs_each_message_once(qgis_iface, log_panel):
    first = OfflineMapSyncPlugin(qgis_iface)
    first.initGui()
    first.unload()
    # A plugin reload imports the modules again before loading the plugin anew.
    importlib.reload(message_log)
    second = OfflineMapSyncPlugin(qgis_iface)
    second.initGui()
    try:
        assert len(message_log.message_log_handlers()) == 1
        logging.getLogger(CORE_LOGGER).warning("logged once")
        assert log_panel.texts("logged once") == [f"{CORE_LOGGER}: logged once"]
    finally:
        second.unload()
    assert message_log.message_log_handlers() == []


def test_a_handler_left_by_an_older_copy_of_the_module_is_replaced(log_panel):
    # An unload that never ran (QGIS crashed in it, a plugin reloader skipped it) leaves the
    # old handler behind; its class belongs to the previous import of the module.
    message_log.install_message_log_handler()
    importlib.reload(message_log)
    message_log.install_message_log_handler()

    assert len(message_log.message_log_handlers()) == 1
    logging.getLogger(CORE_LOGGER).warning("not twice")
    assert log_panel.texts("not twice") == [f"{CORE_LOGGER}: not twice"]


def test_processing_only_load_installs_the_handler(log_panel):
    # qgis_process creates the plugin without an interface and calls initProcessing only.
    plugin = OfflineMapSyncPlugin(None)
    plugin.initProcessing()
    try:
        logging.getLogger(CORE_LOGGER).warning("from qgis_process")
        assert log_panel.texts("from qgis_process")
    finally:
        plugin.unload()


def test_the_log_level_comes_from_a_qgis_setting(qgis_iface, log_panel):
    from qgis.core import QgsSettings

    settings = QgsSettings()
    settings.setValue(message_log.SETTINGS_LOG_LEVEL, "debug")
    plugin = OfflineMapSyncPlugin(qgis_iface)
    try:
        plugin.initGui()
        logging.getLogger(CORE_LOGGER).debug("GET http://h/arcgis/rest/services/Demo")
    finally:
        plugin.unload()
        settings.remove(message_log.SETTINGS_LOG_LEVEL)

    assert log_panel.texts("GET http://h/arcgis") != []
    assert message_log.configured_level() == logging.INFO
