"""What goes offline: a web map's feature-service layers and tables (or the layers of given
service URLs), grouped by feature service, and the layers left out with the reason.

The Take-offline dialog lists layers with :func:`source_layers` and the take-offline job plans
with the same functions, so the dialog shows what goes offline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import urlsplit, urlunsplit

from .enums import AttachmentSyncDirection, ReturnLayerAttachmentOption
from .offline_map import LayerEntry, strip_credentials

FEATURE_SERVER = re.compile(
    r"^(?P<service>.+?/FeatureServer)(?:/(?P<layer>\d+))?/?$", re.IGNORECASE
)


@dataclass(frozen=True)
class SkippedLayer:
    """A layer of the web map that was not taken offline, and why."""

    title: str
    url: str
    reason: str
    #: A basemap layer kept online or left out as chosen: listed, but not an error.
    basemap: bool = False

    def __post_init__(self) -> None:
        # Web maps may keep a token or API key in a layer URL: it must not reach reports or logs.
        object.__setattr__(self, "url", strip_credentials(self.url))


def layer_url(service_url: str, layer_id: int) -> str:
    """The key of a layer in ``GenerateOfflineMapParameters.layer_queries``."""
    return f"{clean_service_url(service_url)}/{int(layer_id)}"


@dataclass
class ServicePlan:
    """One feature service of what goes offline: its layers and tables, as the web map (or
    the service) lists them; filled in with the service's descriptions when checked."""

    service_url: str
    title: str
    layers: list[LayerEntry]
    #: For service URLs: the layer ids asked for (None = every layer and table).
    wanted_ids: list[int] | None = None
    service_info: dict = field(default_factory=dict)
    layer_infos: dict[int, dict] = field(default_factory=dict)
    download_only: bool = False
    file: str = ""


@dataclass(frozen=True)
class OfflineSettings:
    """What a web map's author chose for taking it offline (web map
    ``applicationProperties.offline``, SDK ``OfflineSettings``): the defaults of on-demand
    take-offline parameters. Without settings everything goes offline with its attachments.

    ``syncDataOptions`` is passed to ``createReplica`` as it is; a service ignores what it
    does not support.
    """

    return_layer_attachment_option: ReturnLayerAttachmentOption = (
        ReturnLayerAttachmentOption.ALL_LAYERS
    )
    return_schema_only_for_editable_layers: bool = False
    attachment_sync_direction: AttachmentSyncDirection = AttachmentSyncDirection.BIDIRECTIONAL
    return_schema_only_for_tables: bool = False
    sync_data_options: int | None = None


def _section(parent: object, key: str) -> dict:
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


def _word(section: dict, key: str) -> str:
    value = section.get(key)
    return value.strip().lower() if isinstance(value, str) else ""


def offline_settings(data: dict) -> OfflineSettings:
    """The offline settings of a web map's data; unknown or malformed values keep their
    defaults (Esri spellings compared without case)."""
    offline = _section(_section(data, "applicationProperties"), "offline")
    editable = _section(offline, "editableLayers")
    read_only = _section(offline, "readonlyLayers")
    download = _word(editable, "download")
    editable_attachments = download not in ("none", "features")
    read_only_attachments = read_only.get("downloadAttachments") is not False
    sync = _word(editable, "sync")
    direction = (
        AttachmentSyncDirection.UPLOAD
        if sync in ("syncfeaturesuploadattachments", "uploadfeaturesandattachments")
        else AttachmentSyncDirection.BIDIRECTIONAL
    )
    options = offline.get("syncDataOptions")
    valid_options = isinstance(options, int) and not isinstance(options, bool) and options >= 0
    return OfflineSettings(
        return_layer_attachment_option=ReturnLayerAttachmentOption.of(
            editable=editable_attachments, read_only=read_only_attachments
        ),
        return_schema_only_for_editable_layers=download == "none",
        attachment_sync_direction=direction,
        return_schema_only_for_tables=_section(offline, "tables").get("includeRows") is False,
        sync_data_options=options if valid_options else None,
    )


def plans_from_webmap(data: dict, skipped: list[SkippedLayer]) -> list[ServicePlan]:
    plans: dict[str, ServicePlan] = {}
    draw_order = 0

    def add(layer: dict, is_table: bool, visible: bool) -> None:
        nonlocal draw_order
        title = str(layer.get("title") or layer.get("id") or "")
        if layer.get("layerType") == "GroupLayer" or (
            not layer.get("url") and isinstance(layer.get("layers"), list)
        ):
            for child in layer.get("layers") or ():
                add(child, is_table, visible and layer.get("visibility", True) is not False)
            return
        url = str(layer.get("url") or "")
        match = FEATURE_SERVER.match(clean_service_url(url)) if url else None
        if not match or match.group("layer") is None:
            reason = (
                "it has no service URL (feature collection or sketch)"
                if not url
                else "only layers of feature services (…/FeatureServer/<id>) can be taken offline"
            )
            skipped.append(SkippedLayer(title, url, reason))
            return
        service_url, layer_id = match.group("service"), int(match.group("layer"))
        plan = plans.get(service_url.lower())
        if plan is None:
            plan = plans[service_url.lower()] = ServicePlan(
                service_url, service_name(service_url), []
            )
        if any(existing.id == layer_id for existing in plan.layers):
            skipped.append(SkippedLayer(title, url, "the same layer is already in the map once"))
            return
        definition = (layer.get("layerDefinition") or {}).get("definitionExpression")
        plan.layers.append(
            LayerEntry(
                id=layer_id,
                title=title,
                is_table=is_table,
                visible=visible and layer.get("visibility", True) is not False,
                opacity=float(layer.get("opacity", 1.0)),
                draw_order=None if is_table else draw_order,
                definition_expression=definition or None,
                webmap_layer_id=str(layer["id"]) if layer.get("id") is not None else None,
            )
        )
        if not is_table:
            draw_order += 1

    for layer in data.get("operationalLayers") or ():
        add(layer, False, True)
    for table in data.get("tables") or ():
        add(table, True, True)
    # Basemap layers are the basemap module's (plugin.core.basemap): downloaded, kept online or
    # left out as the take-offline parameters say.
    return list(plans.values())


def plans_from_service_urls(urls: Iterable[str]) -> list[ServicePlan]:
    plans: dict[str, ServicePlan] = {}
    for url in urls:
        match = FEATURE_SERVER.match(url)
        assert match is not None  # checked by OfflineMapTask
        service_url, layer = match.group("service"), match.group("layer")
        plan = plans.get(service_url.lower())
        if plan is None:
            plan = ServicePlan(service_url, service_name(service_url), [], wanted_ids=[])
            plans[service_url.lower()] = plan
        if layer is None:
            plan.wanted_ids = None
        elif plan.wanted_ids is not None and int(layer) not in plan.wanted_ids:
            plan.wanted_ids.append(int(layer))
    return list(plans.values())


def layers_of_service(info: dict) -> list[LayerEntry]:
    """Every layer and table of a service description, in its table-of-contents order."""
    layers = [item for item in info.get("layers") or () if "id" in item]
    tables = [item for item in info.get("tables") or () if "id" in item]
    # The first layer of a service is the top one in ArcGIS's table of contents.
    count = len(layers)
    entries = [
        LayerEntry(
            id=int(item["id"]),
            title=str(item.get("name", item["id"])),
            draw_order=count - 1 - index,
        )
        for index, item in enumerate(layers)
    ]
    entries += [
        LayerEntry(id=int(item["id"]), title=str(item.get("name", item["id"])), is_table=True)
        for item in tables
    ]
    return entries


def fill_layers_from_service(plan: ServicePlan, info: dict, skipped: list[SkippedLayer]) -> None:
    """Give a plan made from service URLs (no layers yet) the service's layers and tables, or
    those of them asked for; asked-for layers the service lacks go to ``skipped``."""
    if plan.layers:
        return
    layers = layers_of_service(info)
    if plan.wanted_ids is None:
        plan.layers = layers
        return
    known = {layer.id for layer in layers}
    plan.layers = [layer for layer in layers if layer.id in plan.wanted_ids]
    for layer_id in plan.wanted_ids:
        if layer_id not in known:
            skipped.append(
                SkippedLayer(
                    str(layer_id),
                    layer_url(plan.service_url, layer_id),
                    "the service has no such layer",
                )
            )


def clean_service_url(url: str) -> str:
    parts = urlsplit(url.strip())
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def service_name(service_url: str) -> str:
    segments = [s for s in urlsplit(service_url).path.split("/") if s]
    for index, segment in enumerate(segments):
        if segment.lower() == "featureserver" and index > 0:
            return segments[index - 1]
    return segments[-1] if segments else "service"
