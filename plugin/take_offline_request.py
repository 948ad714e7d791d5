"""A request to take a map offline, as the dialog and the Processing algorithm collect it, and
the job that carries it out with the core ``OfflineMapTask``."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.jobs import Job
from .core.rest import ArcGISClient, CredentialProvider
from .core.take_offline import GenerateOfflineMapResult, LayerQuery, OfflineMapTask

_LAYER_URL = re.compile(r"^(.+?/FeatureServer)/(\d+)/?$", re.IGNORECASE)


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
    #: Layers taken offline without rows (schema only), as (service URL, layer id).
    schema_only_layers: list[tuple[str, int]] = field(default_factory=list)

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
        for service_url, layer_id in request.schema_only_layers:
            parameters.set_layer_query(service_url, layer_id, LayerQuery(query_option="none"))
        self._check_cancelled()
        inner = self.offline_task.generate_offline_map(parameters, request.folder)
        inner.add_progress_listener(lambda percent, message: self._report(percent / 100.0, message))
        with self._inner_lock:
            self._inner = inner
        if self.is_cancelled:
            inner.cancel()
        return inner.run()


@dataclass(frozen=True)
class SourceLayer:
    """A layer or table that a take-offline request would take (for choosing what gets rows)."""

    title: str
    service_url: str
    layer_id: int
    is_table: bool = False


def list_source_layers(
    request: TakeOfflineRequest, credentials: CredentialProvider | None = None
) -> list[SourceLayer]:
    """The feature-service layers and tables of the request's web map or services (network)."""
    client = ArcGISClient(credentials)
    found: list[SourceLayer] = []
    if request.portal_url and request.webmap_item_id:
        task = OfflineMapTask(
            portal_url=request.portal_url, webmap_item_id=request.webmap_item_id, client=client
        )
        _, data = task.webmap()

        def walk(items, is_table: bool) -> None:
            for item in items or ():
                if isinstance(item.get("layers"), list) and not item.get("url"):
                    walk(item["layers"], is_table)
                    continue
                match = _LAYER_URL.match(str(item.get("url") or "").split("?")[0])
                if match:
                    found.append(
                        SourceLayer(
                            str(item.get("title") or match.group(2)),
                            match.group(1),
                            int(match.group(2)),
                            is_table,
                        )
                    )

        walk(data.get("operationalLayers"), False)
        walk(data.get("tables"), True)
        return found
    for url in request.service_urls:
        service_url = url.rstrip("/")
        info = client.service_info(service_url)
        for key, is_table in (("layers", False), ("tables", True)):
            for item in info.get(key) or ():
                found.append(
                    SourceLayer(
                        str(item.get("name", item.get("id"))),
                        service_url,
                        int(item["id"]),
                        is_table,
                    )
                )
    return found
