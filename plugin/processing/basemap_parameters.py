"""The basemap parameters of the take-offline algorithms: what to do with the web map's
basemap (download, keep online, a local file, none), the levels and the tile limit."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
)

from ..core.basemap import ARCGIS_EXPORT_LIMIT, BasemapOptions
from ..qgis_compat import INTEGER_TYPE
from ..resources import tr
from ..take_offline_request import basemap_mode_labels


def add_basemap_parameters(algorithm) -> None:
    """BASEMAP, BASEMAP_MIN_LEVEL, BASEMAP_MAX_LEVEL, BASEMAP_TILE_LIMIT and BASEMAP_FILE."""
    defaults = BasemapOptions()
    algorithm.addParameter(
        QgsProcessingParameterEnum(
            "BASEMAP",
            tr("Basemap (a local tile file: BASEMAP_FILE)"),
            options=[label for _, label in basemap_mode_labels()],
            defaultValue=0,
        )
    )
    for name, label, value in (
        ("BASEMAP_MIN_LEVEL", tr("Basemap: least detailed level"), defaults.min_level),
        ("BASEMAP_MAX_LEVEL", tr("Basemap: most detailed level"), defaults.max_level),
    ):
        algorithm.addParameter(
            QgsProcessingParameterNumber(
                name,
                label,
                INTEGER_TYPE,
                defaultValue=value,
                minValue=0,
                maxValue=30,
            )
        )
    algorithm.addParameter(
        QgsProcessingParameterNumber(
            "BASEMAP_TILE_LIMIT",
            tr("Basemap: most tiles to download"),
            INTEGER_TYPE,
            defaultValue=ARCGIS_EXPORT_LIMIT,
            minValue=1,
        )
    )
    algorithm.addParameter(
        QgsProcessingParameterFile(
            "BASEMAP_FILE",
            tr("Local basemap file (.gpkg, .mbtiles, .tpkx, .vtpk)"),
            fileFilter=tr("Basemap files (*.gpkg *.mbtiles *.tpkx *.vtpk)"),
            optional=True,
        )
    )


def basemap_options(algorithm, parameters, context) -> BasemapOptions:
    """The basemap parameters as :class:`BasemapOptions`; a bad combination is refused with
    a message naming the parameter."""
    modes = [mode for mode, _ in basemap_mode_labels()]
    path = algorithm.parameterAsFile(parameters, "BASEMAP_FILE", context) or None
    try:
        return BasemapOptions(
            mode=modes[algorithm.parameterAsEnum(parameters, "BASEMAP", context)],
            min_level=algorithm.parameterAsInt(parameters, "BASEMAP_MIN_LEVEL", context),
            max_level=algorithm.parameterAsInt(parameters, "BASEMAP_MAX_LEVEL", context),
            tile_limit=algorithm.parameterAsInt(parameters, "BASEMAP_TILE_LIMIT", context),
            local_path=path,
        )
    except ValueError as error:
        raise QgsProcessingException(
            tr("Basemap: {0} (BASEMAP, BASEMAP_MIN_LEVEL, BASEMAP_MAX_LEVEL, BASEMAP_FILE)").format(
                str(error)
            )
        ) from None
