"""The GeoPackage schema of a geodatabase, made from the service's layer JSON.

GDAL creates the GeoPackage itself (feature tables, attribute tables, spatial indexes, field
domains as ``gpkg_data_column_constraints``), so the file is exactly what GDAL and QGIS
expect; the ``oms_`` bookkeeping and the tracking triggers are added afterwards with SQL.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import contextmanager
from typing import Iterator

from . import field_values as fv
from .errors import GeodatabaseError, UnsupportedGeometryError
from .gdal_mode import gdal_exceptions
from .geodatabase_model import FieldDef, LayerDef, unique_name
from .geometry import GPKG_CURVE_GEOMETRY_TYPE, gpkg_geometry_type, normalize_geometry_type
from .gpkg_connection import quote, rtree_name

#: Columns of a ``<table>__ATTACH`` table (after its ATTACHMENTID primary key).
ATTACHMENT_COLUMNS = ("GLOBALID", "REL_GLOBALID", "CONTENT_TYPE", "ATT_NAME", "DATA_SIZE", "DATA")
ATTACHMENT_FID = "ATTACHMENTID"
ATTACHMENT_SUFFIX = "__ATTACH"

# ArcGIS-specific well-known IDs and their EPSG equivalents.
_WKID_ALIASES = {102100: 3857, 102113: 3857, 900913: 3857, 102200: 4326}
_RESERVED_PREFIXES = ("gpkg_", "rtree_", "sqlite_", "oms_")


@contextmanager
def _quiet_gdal() -> Iterator[None]:
    from osgeo import gdal

    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        yield
    finally:
        gdal.PopErrorHandler()


def spatial_reference(service_info: dict, layer_infos: dict[int, dict]):
    """The ``osr.SpatialReference`` of the service (``None`` when it has no spatial layers)."""
    from osgeo import osr

    candidates = [service_info.get("spatialReference")]
    for info in layer_infos.values():
        candidates.append((info.get("extent") or {}).get("spatialReference"))
        candidates.append(info.get("sourceSpatialReference"))
    for sr in candidates:
        if not isinstance(sr, dict):
            continue
        user_inputs = []
        for code in (sr.get("latestWkid"), sr.get("wkid")):
            if code is not None:
                code = _WKID_ALIASES.get(int(code), int(code))
                user_inputs += [f"EPSG:{code}", f"ESRI:{code}"]
        wkt = sr.get("wkt") or sr.get("wkt2")
        if wkt:
            user_inputs.append(wkt)
        for user_input in user_inputs:
            srs = osr.SpatialReference()
            with _quiet_gdal():
                ok = srs.SetFromUserInput(user_input) == 0
            if ok:
                _traditional_axis_order(srs)
                return srs
    raise GeodatabaseError(
        "The service's spatial reference is not known to GDAL; the data cannot be stored "
        f"offline ({service_info.get('spatialReference')!r})."
    )


def _traditional_axis_order(srs) -> None:
    from osgeo import osr

    if hasattr(srs, "SetAxisMappingStrategy"):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)


def table_name_for(name: str, taken: set[str]) -> str:
    """A safe, unique SQL table name for a layer name."""
    base = re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_") or "layer"
    if base[0].isdigit() or base.lower().startswith(_RESERVED_PREFIXES):
        base = "L_" + base
    return unique_name(base, taken)


def _editor_tracking_fields(info: dict) -> set[str]:
    efi = info.get("editFieldsInfo") or {}
    return {
        str(v).lower()
        for k, v in efi.items()
        if k in ("creationDateField", "creatorField", "editDateField", "editorField") and v
    }


def stores_true_curves(service_info: dict, info: dict) -> bool:
    """Whether a line or polygon layer's features may hold true curves, so that its column is
    declared curved: the layer (or else its service) says it supports or allows true curves."""
    if info.get("type") == "Table" or not info.get("geometryType"):
        return False
    for source in (info, service_info):
        for key in ("supportsTrueCurve", "allowTrueCurvesUpdates"):
            if key in source:
                return bool(source.get("supportsTrueCurve") or source.get("allowTrueCurvesUpdates"))
    return False


def layer_definition(
    layer_id: int,
    info: dict,
    table_name: str,
    srs_id: int,
    geometry_column: str | None,
    *,
    true_curves: bool = False,
) -> LayerDef:
    """The :class:`LayerDef` of a service layer/table JSON (``true_curves``: its geometry
    column is declared curved, see :func:`stores_true_curves`)."""
    fields = info.get("fields") or []
    oid_field = info.get("objectIdField")
    gid_field = info.get("globalIdField")
    for f in fields:
        ftype = f.get("type")
        if not oid_field and ftype == fv.OID:
            oid_field = f["name"]
        if not gid_field and ftype == fv.GLOBALID:
            gid_field = f["name"]
    name = info.get("name") or f"Layer {layer_id}"
    if not oid_field:
        raise GeodatabaseError(f"{name}: the layer has no ObjectID field.")
    if not gid_field:
        raise GeodatabaseError(
            f"{name}: the layer has no GlobalID field, so its edits cannot be synchronized."
        )
    system = _editor_tracking_fields(info) | {oid_field.lower(), gid_field.lower()}
    defs = []
    for f in fields:
        ftype = f.get("type")
        if ftype in (fv.OID, fv.GEOMETRY) or f["name"].lower() == oid_field.lower():
            continue
        editable = bool(f.get("editable", True))
        defs.append(
            FieldDef(
                name=f["name"],
                esri_type=ftype,
                editable=editable,
                uploadable=editable and f["name"].lower() not in system,
                json=f,
            )
        )
    if not any(d.name.lower() == gid_field.lower() for d in defs):
        defs.insert(
            0,
            FieldDef(
                gid_field, fv.GLOBALID, False, False, {"name": gid_field, "type": fv.GLOBALID}
            ),
        )
    geometry_type = info.get("geometryType")
    is_table = info.get("type") == "Table" or not geometry_type
    if not is_table:
        geometry_type = normalize_geometry_type(geometry_type)
    return LayerDef(
        id=int(layer_id),
        name=name,
        table_name=table_name,
        is_table=is_table,
        geometry_type=None if is_table else geometry_type,
        has_attachments=bool(info.get("hasAttachments")),
        layer_json=info,
        has_z=bool(info.get("hasZ")) and not is_table,
        has_m=bool(info.get("hasM")) and not is_table,
        object_id_field=oid_field,
        global_id_field=next(d.name for d in defs if d.name.lower() == gid_field.lower()),
        geometry_column=None if is_table else geometry_column,
        srs_id=srs_id if not is_table else 0,
        attachment_table=(table_name + ATTACHMENT_SUFFIX) if info.get("hasAttachments") else None,
        fields=tuple(defs),
        true_curves=true_curves and not is_table and geometry_type in GPKG_CURVE_GEOMETRY_TYPE,
    )


def _ogr_field(ogr, fdef: FieldDef):
    """An ``ogr.FieldDefn`` for an Esri field."""
    t = fdef.esri_type
    length = fdef.json.get("length")
    subtype = ogr.OFSTNone
    width = 0
    if t in (fv.GLOBALID, fv.GUID):
        otype, width = ogr.OFTString, 38
    elif t == fv.STRING:
        otype = ogr.OFTString
        width = int(length) if length and 0 < int(length) < 1_000_000 else 0
    elif t == fv.SMALLINT:
        otype, subtype = ogr.OFTInteger, ogr.OFSTInt16
    elif t == fv.INTEGER:
        otype = ogr.OFTInteger
    elif t == fv.BIGINT:
        otype = ogr.OFTInteger64
    elif t == fv.SINGLE:
        otype, subtype = ogr.OFTReal, ogr.OFSTFloat32
    elif t == fv.DOUBLE:
        otype = ogr.OFTReal
    elif t == fv.DATE:
        otype = ogr.OFTDateTime
    elif t == fv.DATEONLY:
        otype = ogr.OFTDate
    elif t == fv.BLOB:
        otype = ogr.OFTBinary
    else:  # TimeOnly, TimestampOffset, XML, Raster...: text as the service sends it
        otype = ogr.OFTString
    defn = ogr.FieldDefn(fdef.name, otype)
    defn.SetSubType(subtype)
    if width:
        defn.SetWidth(width)
    alias = fdef.json.get("alias")
    if alias and alias != fdef.name and hasattr(defn, "SetAlternativeName"):
        defn.SetAlternativeName(alias)
    return defn


def _ogr_domain(ogr, domain: dict, defn):
    """An OGR field domain for an Esri coded-value or range domain (``None`` if unsupported)."""
    name = domain.get("name")
    if not name:
        return None
    description = domain.get("description") or ""
    if domain.get("type") == "codedValue":
        values = {}
        for cv in domain.get("codedValues") or []:
            code = cv.get("code")
            if code is None:
                continue
            values[str(code)] = str(cv.get("name", code))
        if not values:
            return None
        return ogr.CreateCodedFieldDomain(
            name, description, defn.GetType(), defn.GetSubType(), values
        )
    if domain.get("type") == "range":
        rng = domain.get("range") or []
        if len(rng) != 2 or defn.GetType() not in (ogr.OFTInteger, ogr.OFTInteger64, ogr.OFTReal):
            return None
        return ogr.CreateRangeFieldDomain(
            name,
            description,
            defn.GetType(),
            defn.GetSubType(),
            rng[0],
            True,
            rng[1],
            True,
        )
    return None


def _ogr_geometry_type(ogr, layer: LayerDef) -> int:
    base = {
        "POINT": ogr.wkbPoint,
        "MULTIPOINT": ogr.wkbMultiPoint,
        "MULTILINESTRING": ogr.wkbMultiLineString,
        "MULTIPOLYGON": ogr.wkbMultiPolygon,
        "MULTICURVE": ogr.wkbMultiCurve,
        "MULTISURFACE": ogr.wkbMultiSurface,
    }[gpkg_geometry_type(layer.geometry_type, layer.true_curves)]
    if layer.has_z:
        base = ogr.GT_SetZ(base)
    if layer.has_m:
        base = ogr.GT_SetM(base)
    return base


# GDAL reports failures by return codes here, whatever mode other code in the interpreter chose.
@gdal_exceptions(False)
def create_geopackage(
    path: str, service_info: dict, layer_infos: dict[int, dict]
) -> list[LayerDef]:
    """Create the GeoPackage with one table per layer (and ``__ATTACH`` tables); return them."""
    from osgeo import gdal

    spatial_ids = [
        lid
        for lid, info in layer_infos.items()
        if info.get("type") != "Table" and info.get("geometryType")
    ]
    srs = spatial_reference(service_info, layer_infos) if spatial_ids else None
    for lid, info in layer_infos.items():  # refuse bad layers before any file exists
        try:
            layer_definition(lid, info, "check", 0, "geom")
        except UnsupportedGeometryError as exc:
            raise GeodatabaseError(f"{info.get('name')}: {exc}") from exc
    driver = gdal.GetDriverByName("GPKG")
    if driver is None:
        raise GeodatabaseError("GDAL has no GeoPackage driver; the geodatabase cannot be created.")
    with _quiet_gdal():
        ds = driver.Create(path, 0, 0, 0, gdal.GDT_Unknown)
    if ds is None:
        raise GeodatabaseError(f"Cannot create the GeoPackage {path}: {gdal.GetLastErrorMsg()}")
    message = None
    try:
        layers = _create_tables(ds, srs, service_info, layer_infos)
    except GeodatabaseError as exc:
        message = str(exc)
    # Close the file before anyone removes it; the caught exception (and the frames holding
    # GDAL objects) is gone once the except blocks end.
    ds = None
    if message is not None:
        raise GeodatabaseError(message)
    return layers


def _create_tables(ds, srs, service_info: dict, layer_infos: dict[int, dict]) -> list[LayerDef]:
    from osgeo import gdal, ogr

    taken: set[str] = set()
    layers: list[LayerDef] = []
    domains_added: set[str] = set()
    for lid in sorted(layer_infos):
        info = layer_infos[lid]
        table = table_name_for(info.get("name") or f"layer_{lid}", taken)
        field_names = {f.get("name", "").lower() for f in info.get("fields") or []}
        geom_col = "geom" if "geom" not in field_names else "geom_shape"
        try:
            layer = layer_definition(
                lid,
                info,
                table,
                0,
                geom_col,
                true_curves=stores_true_curves(service_info, info),
            )
        except UnsupportedGeometryError as exc:
            raise GeodatabaseError(f"{info.get('name')}: {exc}") from exc
        if layer.attachment_table:
            taken.add(layer.attachment_table.lower())
        options = [f"FID={layer.object_id_field}", f"IDENTIFIER={layer.name}"]
        description = info.get("description")
        if description:
            options.append(f"DESCRIPTION={description[:1000]}")
        if layer.is_table:
            olayer = ds.CreateLayer(table, None, ogr.wkbNone, options)
        else:
            options += [f"GEOMETRY_NAME={geom_col}", "SPATIAL_INDEX=YES"]
            olayer = ds.CreateLayer(table, srs, _ogr_geometry_type(ogr, layer), options)
        if olayer is None:
            raise GeodatabaseError(
                f"Cannot create the table for {layer.name}: {gdal.GetLastErrorMsg()}"
            )
        for fdef in layer.fields:
            defn = _ogr_field(ogr, fdef)
            domain = fdef.json.get("domain")
            if isinstance(domain, dict):
                odomain = _ogr_domain(ogr, domain, defn)
                dname = domain.get("name")
                if odomain is not None and dname not in domains_added:
                    with _quiet_gdal():
                        added = ds.AddFieldDomain(odomain)
                    if added:
                        domains_added.add(dname)
                if dname in domains_added:
                    defn.SetDomainName(dname)
            if olayer.CreateField(defn) != 0:
                raise GeodatabaseError(
                    f"Cannot create field {fdef.name} of {layer.name}: {gdal.GetLastErrorMsg()}"
                )
        if layer.attachment_table:
            alayer = ds.CreateLayer(
                layer.attachment_table,
                None,
                ogr.wkbNone,
                [f"FID={ATTACHMENT_FID}", f"IDENTIFIER={layer.name} attachments"],
            )
            for col in ATTACHMENT_COLUMNS:
                if col in ("GLOBALID", "REL_GLOBALID"):
                    defn = ogr.FieldDefn(col, ogr.OFTString)
                    defn.SetWidth(38)
                elif col == "DATA_SIZE":
                    defn = ogr.FieldDefn(col, ogr.OFTInteger64)
                elif col == "DATA":
                    defn = ogr.FieldDefn(col, ogr.OFTBinary)
                else:
                    defn = ogr.FieldDefn(col, ogr.OFTString)
                alayer.CreateField(defn)
        layers.append(layer)
    ds.FlushCache()
    return layers


def refresh_extent(conn: sqlite3.Connection, layer: LayerDef, *, mark_changed: bool) -> None:
    """Store ``layer``'s extent in ``gpkg_contents`` from its spatial index (GDAL and QGIS read
    it there instead of scanning); ``mark_changed`` also stamps ``last_change`` with now.
    Nothing happens for a table without geometry or without a spatial index."""
    if not layer.geometry_column:
        return
    rtree = quote(rtree_name(layer.table_name, layer.geometry_column))
    stamp = ", last_change = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')" if mark_changed else ""
    try:
        conn.execute(
            # (one pass over the index for the four bounds)
            f"UPDATE gpkg_contents SET (min_x, max_x, min_y, max_y) ="
            f" (SELECT min(minx), max(maxx), min(miny), max(maxy) FROM {rtree}){stamp}"
            " WHERE table_name = ?",
            (layer.table_name,),
        )
    except sqlite3.OperationalError:
        pass  # no spatial index: GDAL computes the extent itself
