"""Forwards the plugin's Python ``logging`` (the core's loggers included) to QGIS's log panel,
tab "Offline Map Sync".

The core logs with plain ``logging.getLogger(__name__)`` because it never imports QGIS; the
plugin object installs one handler on the package's logger when it loads and removes it when
it unloads. The package logger is found from this module's own name, so it is ``plugin`` in the
tests and ``offline_map_sync.plugin`` inside QGIS.
"""

from __future__ import annotations

import logging
import re

from qgis.core import Qgis, QgsMessageLog, QgsSettings

from .resources import PLUGIN_NAME

#: The logger every module of the plugin logs under (``plugin.core.rest`` etc.).
PACKAGE_LOGGER = __name__.rpartition(".")[0]
#: How our handler is recognised, also when it was installed by an older copy of this module
#: (a plugin reload imports the module again, so ``isinstance`` would not see the old one).
HANDLER_NAME = "offline_map_sync.qgis_message_log"
#: QGIS setting naming the level to log at (DEBUG, INFO, WARNING, ERROR); INFO when unset.
SETTINGS_LOG_LEVEL = "OfflineMapSync/logLevel"

# The REST client never logs secrets; this is a second line of defence for messages that
# quote a URL or a form body.
_SECRET = re.compile(r"((?:token|password|access_token)\s*[=:]\s*)[^&\s\"',;]+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the values of ``token=``/``password=`` pairs replaced by ``***``."""
    return _SECRET.sub(r"\1***", text)


def _qgis_level(levelno: int):
    if levelno >= logging.ERROR:
        return Qgis.MessageLevel.Critical
    if levelno >= logging.WARNING:
        return Qgis.MessageLevel.Warning
    return Qgis.MessageLevel.Info


class QgsMessageLogHandler(logging.Handler):
    """A logging handler writing to ``QgsMessageLog`` under the plugin's tag.

    ``QgsMessageLog.logMessage`` is thread-safe, so records from background tasks are fine.
    Only warnings and errors make the log button blink (``notifyUser``).
    """

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.set_name(HANDLER_NAME)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        #: The package logger's level before installation, restored on removal.
        self.previous_level = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = redact(self.format(record))
            QgsMessageLog.logMessage(
                message, PLUGIN_NAME, _qgis_level(record.levelno), record.levelno >= logging.WARNING
            )
        except Exception:  # noqa: BLE001 (logging must never break the caller)
            self.handleError(record)


def configured_level() -> int:
    """The level from the QGIS setting ``OfflineMapSync/logLevel`` (INFO when unset or unknown);
    DEBUG adds every request line, for support cases."""
    name = str(QgsSettings().value(SETTINGS_LOG_LEVEL, "INFO") or "INFO").strip().upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.INFO


def install_message_log_handler(level: int | None = None) -> logging.Handler:
    """Install the handler on the package logger (once: an earlier one is replaced) and make
    the package log at ``level`` (default: :func:`configured_level`) unless it was already set
    more verbose. Returns the handler."""
    if level is None:
        level = configured_level()
    remove_message_log_handler()
    logger = logging.getLogger(PACKAGE_LOGGER)
    handler = QgsMessageLogHandler()
    handler.previous_level = logger.level
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    return handler


def remove_message_log_handler() -> None:
    """Remove every handler of ours from the package logger and restore its level."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    # Newest first, so that the level finally restored is the one from before the first install.
    for handler in reversed([h for h in logger.handlers if h.get_name() == HANDLER_NAME]):
        logger.removeHandler(handler)
        logger.setLevel(getattr(handler, "previous_level", logging.NOTSET))
        handler.close()


def message_log_handlers() -> list[logging.Handler]:
    """The handlers of ours currently on the package logger (for checks and tests)."""
    return [h for h in logging.getLogger(PACKAGE_LOGGER).handlers if h.get_name() == HANDLER_NAME]
