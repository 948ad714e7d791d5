"""Processing algorithm: take a web map or feature services offline into an offline map folder."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterString,
)

from ..resources import tr
from ..take_offline_request import TakeOfflineRequest
from .base import OfflineMapAlgorithm
from .basemap_parameters import add_basemap_parameters, basemap_options

#: INCLUDE_ATTACHMENTS is 0 (No), 1 (Yes) or 2: as the web map's offline settings say
#: (services: with attachments).
ATTACHMENTS_AS_THE_WEB_MAP_SAYS = 2


def _attachments_choice(index: int) -> bool | None:
    return None if index == ATTACHMENTS_AS_THE_WEB_MAP_SAYS else bool(index)


class TakeMapOfflineAlgorithm(OfflineMapAlgorithm):
    NAME = "takemapoffline"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return tr("Take map offline")

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return tr(
            "Takes a web map (PORTAL_URL + WEBMAP_ITEM_ID) or feature services (SERVICE_URLS, one per "
            "line or separated by commas) offline on demand, for an area (EXTENT; empty = everything), "
            "with the layers listed in SCHEMA_ONLY_LAYERS taken offline empty and attachments as "
            "INCLUDE_ATTACHMENTS says (by default as the web map's offline settings say), "
            "into a new or empty folder: one GeoPackage per service plus offline_map.json, with the web "
            "map's basemap as BASEMAP says (by default its tiles for the area at levels "
            "BASEMAP_MIN_LEVEL–BASEMAP_MAX_LEVEL, refused above BASEMAP_TILE_LIMIT tiles). The "
            "services must allow sync. Open the folder with the Offline Map Sync panel, or sync it "
            "with 'Synchronize offline map'. To download a preplanned map area instead, use "
            "'Download preplanned map area'."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(
            QgsProcessingParameterString(
                "PORTAL_URL", tr("Portal URL (…/sharing/rest)"), optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterString("WEBMAP_ITEM_ID", tr("Web map item ID"), optional=True)
        )
        self.addParameter(
            QgsProcessingParameterString(
                "SERVICE_URLS", tr("Feature service URLs"), multiLine=True, optional=True
            )
        )
        self.addParameter(QgsProcessingParameterExtent("EXTENT", tr("Area"), optional=True))
        self.addParameter(
            QgsProcessingParameterEnum(
                "INCLUDE_ATTACHMENTS",
                tr("Include attachments"),
                [tr("No"), tr("Yes"), tr("As the web map's offline settings say")],
                defaultValue=ATTACHMENTS_AS_THE_WEB_MAP_SAYS,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                "SCHEMA_ONLY_LAYERS",
                tr("Layers taken offline empty (layer URLs …/FeatureServer/<id>)"),
                multiLine=True,
                optional=True,
            )
        )
        add_basemap_parameters(self)
        self.add_take_offline_outputs()

    def _request(self, parameters, context) -> TakeOfflineRequest:
        services = self.parameterAsString(parameters, "SERVICE_URLS", context)
        urls = [u.strip() for u in services.replace(",", "\n").splitlines() if u.strip()]
        request = TakeOfflineRequest(
            folder=self.parameterAsString(parameters, "OUTPUT", context),
            portal_url=self.parameterAsString(parameters, "PORTAL_URL", context).strip() or None,
            webmap_item_id=self.parameterAsString(parameters, "WEBMAP_ITEM_ID", context).strip()
            or None,
            service_urls=urls,
            include_attachments=_attachments_choice(
                self.parameterAsEnum(parameters, "INCLUDE_ATTACHMENTS", context)
            ),
            title=self.parameterAsString(parameters, "TITLE", context).strip(),
        )
        empty = self.parameterAsString(parameters, "SCHEMA_ONLY_LAYERS", context)
        for text in empty.replace(",", "\n").splitlines():
            service_url, _, layer_id = text.strip().rstrip("/").rpartition("/")
            if not text.strip():
                continue
            if not layer_id.isdigit() or "/featureserver" not in service_url.lower():
                raise QgsProcessingException(
                    tr("{0} is not a layer URL (…/FeatureServer/<id>).").format(text.strip())
                )
            request.schema_only_layers.append((service_url, int(layer_id)))
        if bool(request.portal_url and request.webmap_item_id) == bool(urls):
            raise QgsProcessingException(
                tr("Give either PORTAL_URL and WEBMAP_ITEM_ID, or SERVICE_URLS.")
            )
        request.area_of_interest = self.area_of_interest(parameters, context)
        request.basemap = basemap_options(self, parameters, context)
        return request

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        # Read once, here on the main thread (the extent may come from the project's layers).
        self.request = self._request(parameters, context)
        self.prepare_credentials(
            parameters, context, self.request.auth_url, self.request.credential_urls
        )
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        from pathlib import Path

        request = self.request
        request.folder = Path(request.folder)
        _, outputs = self.take_offline(
            request, feedback, tr("The map '{0}' is offline in {1} ({2} layers and tables).")
        )
        return outputs
