"""Small basemap tile files made with GDAL, as the basemap download leaves them on disk: a
GeoPackage tile set of one colour and a vector MBTiles with a land polygon and a road, plus a
Mapbox GL style for it."""

from __future__ import annotations

import json
from pathlib import Path

from osgeo import gdal, ogr, osr

#: Web Mercator square (metres) that both files cover.
HALF = 1_000_000.0
#: The raster's colour and the style's land colour.
RASTER_RGB = (60, 120, 180)
LAND_RGB = (136, 204, 136)


def _mercator() -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    return srs


def raster_gpkg(path: Path) -> Path:
    """A GeoPackage tile set (table ``basemap``, GoogleMapsCompatible) of one colour."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = gdal.GetDriverByName("MEM").Create("", 256, 256, 3, gdal.GDT_Byte)
    source.SetGeoTransform([-HALF, 2 * HALF / 256, 0, HALF, 0, -2 * HALF / 256])
    source.SetProjection(_mercator().ExportToWkt())
    for band, value in enumerate(RASTER_RGB, start=1):
        source.GetRasterBand(band).Fill(value)
    gdal.Translate(
        str(path),
        source,
        format="GPKG",
        creationOptions=["TILING_SCHEME=GoogleMapsCompatible", "RASTER_TABLE=basemap"],
    )
    return path


def vector_mbtiles(path: Path) -> Path:
    """A vector-tile MBTiles (levels 0..5) with source layers ``land`` and ``roads``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = gdal.GetDriverByName("Memory").Create("", 0, 0, 0, gdal.GDT_Unknown)
    square = (
        f"POLYGON(({-HALF} {-HALF},{HALF} {-HALF},{HALF} {HALF},{-HALF} {HALF},{-HALF} {-HALF}))"
    )
    for name, kind, wkt in (
        ("land", ogr.wkbPolygon, square),
        ("roads", ogr.wkbLineString, f"LINESTRING({-HALF} 0,{HALF} 0)"),
    ):
        layer = source.CreateLayer(name, _mercator(), kind)
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    gdal.VectorTranslate(
        str(path), source, format="MVT", datasetCreationOptions=["FORMAT=MBTILES", "MAXZOOM=5"]
    )
    return path


def mapbox_style(path: Path, *, unsupported: bool = True) -> Path:
    """A Mapbox GL style for :func:`vector_mbtiles` (with a heatmap layer QGIS cannot convert)."""
    land = "#{:02x}{:02x}{:02x}".format(*LAND_RGB)
    layers = [
        {
            "id": "land",
            "type": "fill",
            "source": "esri",
            "source-layer": "land",
            "paint": {"fill-color": land},
        },
        {
            "id": "roads",
            "type": "line",
            "source": "esri",
            "source-layer": "roads",
            "paint": {"line-color": "#ff0000", "line-width": 3},
        },
    ]
    if unsupported:
        layers.append({"id": "heat", "type": "heatmap", "source": "esri", "source-layer": "roads"})
    style = {
        "version": 8,
        "sources": {"esri": {"type": "vector", "url": "../../"}},
        "layers": layers,
    }
    path.write_text(json.dumps(style), encoding="utf-8")
    return path
