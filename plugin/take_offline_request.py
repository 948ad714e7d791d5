"""A request to take a map offline, as the dialog and the Processing algorithm collect it, and
the job that carries it out with the core ``OfflineMapTask``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.jobs import Job
from .core.rest import ArcGISClient, CredentialProvider
from .core.take_offline import GenerateOfflineMapResult, OfflineMapTask


@dataclass
class TakeOfflineRequest:
    """What to take offline: a web map (portal + item) or service URLs, an area, a folder.

    ``authcfg`` is the id of a QGIS authentication configuration (never a secret itself).
    """

    folder: Path
    portal_url: str | None = None
    webmap_item_id: str | None = None
    service_urls: list[str] = field(default_factory=list)
    area_of_interest: dict[str, Any] | None = None
    include_attachments: bool = True
    title: str = ""
    authcfg: str = ""

    @property
    def auth_url(self) -> str:
        """The URL the credentials are for (the portal, or the first service)."""
        return self.portal_url or (self.service_urls[0] if self.service_urls else "")


class TakeOfflineJob(Job[GenerateOfflineMapResult]):
    """Reads the web map or services and makes the offline map, all in the job's thread
    (reading a web map already goes to the network)."""

    def __init__(
        self, request: TakeOfflineRequest, credentials: CredentialProvider | None = None
    ) -> None:
        super().__init__()
        self.request = request
        # Built here (main thread) so that a bad request fails before a task starts.
        self.offline_task = OfflineMapTask(
            portal_url=request.portal_url,
            webmap_item_id=request.webmap_item_id,
            service_urls=request.service_urls or None,
            client=ArcGISClient(credentials),
        )
        self._inner: Job | None = None
        self._inner_lock = threading.Lock()

    def cancel(self) -> None:
        super().cancel()
        with self._inner_lock:
            if self._inner is not None:
                self._inner.cancel()

    def _execute(self) -> GenerateOfflineMapResult:
        request = self.request
        self._report(0.0, "Reading the map")
        parameters = self.offline_task.create_default_generate_offline_map_parameters(
            request.area_of_interest
        )
        parameters.include_attachments = request.include_attachments
        if request.title:
            parameters.title = request.title
        self._check_cancelled()
        inner = self.offline_task.generate_offline_map(parameters, request.folder)
        inner.add_progress_listener(lambda percent, message: self._report(percent / 100.0, message))
        with self._inner_lock:
            self._inner = inner
        if self.is_cancelled:
            inner.cancel()
        return inner.run()
