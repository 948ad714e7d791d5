"""Processing algorithms for ahead-of-time maps: list a web map's preplanned map areas, and
download one of them into an offline map folder with an update mode."""

from __future__ import annotations

import json
from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterString,
)

from ..core.errors import OfflineMapSyncError
from ..resources import tr
from ..take_offline_request import (
    TakeOfflineRequest,
    list_map_areas,
    update_mode_labels,
)
from .base import OfflineMapAlgorithm
from .basemap_parameters import add_basemap_parameters, basemap_options


class _WebMapAlgorithm(OfflineMapAlgorithm):
    """Shared: the web map parameters and the request they make."""

    def add_web_map_parameters(self) -> None:
        self.addParameter(
            QgsProcessingParameterString("PORTAL_URL", tr("Portal URL (…/sharing/rest)"))
        )
        self.addParameter(QgsProcessingParameterString("WEBMAP_ITEM_ID", tr("Web map item ID")))

    def web_map_request(self, parameters, context, folder: str = "") -> TakeOfflineRequest:
        portal = self.parameterAsString(parameters, "PORTAL_URL", context).strip()
        item = self.parameterAsString(parameters, "WEBMAP_ITEM_ID", context).strip()
        if not portal or not item:
            raise QgsProcessingException(tr("Give PORTAL_URL and WEBMAP_ITEM_ID."))
        return TakeOfflineRequest(folder=Path(folder), portal_url=portal, webmap_item_id=item)

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        self.prepare_credentials(
            parameters, context, self.web_map_request(parameters, context).auth_url
        )
        return True


class ListPreplannedMapAreasAlgorithm(_WebMapAlgorithm):
    NAME = "listpreplannedmapareas"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return tr("List preplanned map areas")

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return tr(
            "Lists the preplanned map areas of a web map (PORTAL_URL + WEBMAP_ITEM_ID): their item "
            "IDs, titles and download sizes, as JSON in AREAS. Give one of them to 'Download "
            "preplanned map area'."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.add_web_map_parameters()
        self.add_auth_parameter()
        self.addOutput(QgsProcessingOutputString("AREAS", tr("Map areas (JSON)")))
        self.addOutput(QgsProcessingOutputNumber("COUNT", tr("Number of map areas")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        request = self.web_map_request(parameters, context)
        try:
            areas = list_map_areas(request, self.credentials)
        except (OfflineMapSyncError, ValueError) as error:
            raise QgsProcessingException(str(error)) from None
        rows = [
            {
                "item_id": area.item_id,
                "title": area.title,
                "size": area.size,
                "packages": area.package_count,
                "snippet": area.snippet,
            }
            for area in areas
        ]
        for row in rows:
            feedback.pushInfo(
                tr("{0} ({1}): {2} bytes in {3} packages").format(
                    row["title"], row["item_id"], row["size"], row["packages"]
                )
            )
        return {"AREAS": json.dumps(rows, ensure_ascii=False), "COUNT": len(rows)}


class DownloadPreplannedMapAreaAlgorithm(_WebMapAlgorithm):
    NAME = "downloadpreplannedmaparea"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return tr("Download preplanned map area")

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return tr(
            "Takes a web map offline ahead of time: downloads the packages the portal prepared for "
            "one of its preplanned map areas (MAP_AREA: the area's item ID or title) into a new or "
            "empty folder, one GeoPackage per feature service plus offline_map.json. UPDATE_MODE "
            "decides how the map is kept current: synchronizing with the feature services, the "
            "portal's scheduled update packages (read-only, optionally uploading new features), or "
            "not at all. BASEMAP says what happens to the basemap: the area's tile packages are "
            "downloaded by default. Open the folder with the Offline Map Sync panel, or sync it with "
            "'Synchronize offline map'."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.add_web_map_parameters()
        self.addParameter(
            QgsProcessingParameterString("MAP_AREA", tr("Map area (item ID or title)"))
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "UPDATE_MODE",
                tr("Updates"),
                options=[label for _, label in update_mode_labels()],
                defaultValue=0,
            )
        )
        add_basemap_parameters(self)
        self.add_take_offline_outputs()
        self.addOutput(QgsProcessingOutputString("MAP_AREA_ID", tr("Map area item ID")))
        self.addOutput(QgsProcessingOutputString("UPDATE_MODE", tr("Update mode")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        request = self.web_map_request(
            parameters, context, self.parameterAsString(parameters, "OUTPUT", context)
        )
        request.map_area_name = self.parameterAsString(parameters, "MAP_AREA", context).strip()
        if not request.map_area_name:
            raise QgsProcessingException(
                tr("Give MAP_AREA ('List preplanned map areas' shows them).")
            )
        modes = [mode for mode, _ in update_mode_labels()]
        request.update_mode = modes[self.parameterAsEnum(parameters, "UPDATE_MODE", context)]
        request.title = self.parameterAsString(parameters, "TITLE", context).strip()
        request.basemap = basemap_options(self, parameters, context)
        offline_map, outputs = self.take_offline(
            request,
            feedback,
            tr("The map area '{0}' is offline in {1} ({2} layers and tables)."),
        )
        outputs["MAP_AREA_ID"] = offline_map.source.map_area_item_id or ""
        outputs["UPDATE_MODE"] = offline_map.update_mode.name
        return outputs
