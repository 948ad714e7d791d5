"""Seed data: the "demo" services (Demo, ReadOnly, NoSync), a web map item, and the "Large"
service generator for benchmarks. Deterministic: the same seed always gives the same rows
and GlobalIDs."""

from __future__ import annotations

import base64
import json
import math
import random
import uuid
import zlib
from datetime import datetime, timezone

from .store import Tx

DEMO_SERVICE = "Demo"
READONLY_SERVICE = "ReadOnly"
NOSYNC_SERVICE = "NoSync"
PARCELS_SERVICE = "Parcels"
LARGE_SERVICE = "Large"
BASEMAP_SERVICE = "DemoBasemap"  # tiled MapServer (tiles.py)
BASEMAP_NO_EXPORT_SERVICE = "DemoBasemapNoExport"
VECTOR_BASEMAP_SERVICE = "DemoVectorBasemap"  # VectorTileServer
DEMO_WEBMAP_ID = "4f1e7c2a9b6d4e8f8a0b1c2d3e4f5a6b"
#: The Demo layers and the ReadOnly points, with the author's offline settings.
OFFLINE_SETTINGS_WEBMAP_ID = "7a2d9c4e1b8f4a6c9d0e2f3a4b5c6d7e"
#: Its ``applicationProperties.offline``: editable layers without attachments (new ones go up
#: only), read-only layers with theirs, tables schema only, and a syncDataOptions bitmask.
OFFLINE_SETTINGS = {
    "editableLayers": {"download": "features", "sync": "syncFeaturesUploadAttachments"},
    "readonlyLayers": {"downloadAttachments": True},
    "tables": {"includeRows": False},
    "syncDataOptions": 4,
}

SR = {"wkid": 102100, "latestWkid": 3857}
_NS = uuid.UUID("0c5b1f5e-6a1d-4f5e-9a53-3d1f7b2e8c10")

POINT_NAMES = [
    "Café Zürich",
    "Ærøskøbing harbour",
    "東京タワー",
    "Ελληνικό σημείο",
    'Plus + and & "quoted" back\\slash apos\'trophe 100%',
    "Brunnen am Markt",
    "Lookout 7",
    "Old mill",
    "Bridge pier (north)",
    "Здание почты",
    "Well; DROP TABLE points;--",
    "Spring",
]
LINE_NAMES = ["Main street", "River path – west", "Fence 'A'", "Power line 5%", "Trail & track"]
POLYGON_NAMES = ["Park with pond", "Twin fields", "Forest (multipart with hole)", "Plaza"]
DEMO_COUNTS = {0: len(POINT_NAMES), 1: len(LINE_NAMES), 2: len(POLYGON_NAMES), 3: 8}
PARCEL_NAMES = ["Cul-de-sac lot", "Round plaza", "Oval garden", "Yard with a curved pond"]
CURB_NAMES = ["Curb return", "Garden path (Bézier)", "Old-style arc"]
ODD_RING_NAMES = ["Two islands, one wound backwards", "Courtyard wound like its building"]
PARCELS_COUNTS = {0: len(PARCEL_NAMES), 1: len(CURB_NAMES), 2: len(ODD_RING_NAMES)}


def guid(*parts: object) -> str:
    return "{" + str(uuid.uuid5(_NS, "/".join(str(p) for p in parts))).upper() + "}"


def millis(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=timezone.utc).timestamp() * 1000)


def mercator(lon: float, lat: float) -> tuple[float, float]:
    return (
        round(6378137.0 * math.radians(lon), 3),
        round(6378137.0 * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)), 3),
    )


def _field(
    name, ftype, alias=None, length=None, nullable=True, editable=True, domain=None, default=None
):
    f = {"name": name, "type": ftype, "alias": alias or name, "sqlType": "sqlTypeOther"}
    if length is not None:
        f["length"] = length
    f.update(
        {"nullable": nullable, "editable": editable, "domain": domain, "defaultValue": default}
    )
    return f


def _coded(name: str, ftype: str, codes: list[tuple[object, str]]) -> dict:
    return {
        "type": "codedValue",
        "name": name,
        "description": "",
        "codedValues": [{"name": label, "code": code} for code, label in codes],
        "mergePolicy": "esriMPTDefaultValue",
        "splitPolicy": "esriSPTDuplicate",
    }


def _system_fields() -> list[dict]:
    return [
        _field("OBJECTID", "esriFieldTypeOID", nullable=False, editable=False),
        _field("GlobalID", "esriFieldTypeGlobalID", length=38, nullable=False, editable=False),
    ]


def _tracking_fields() -> list[dict]:
    return [
        _field("created_user", "esriFieldTypeString", length=255, editable=False),
        _field("created_date", "esriFieldTypeDate", length=8, editable=False),
        _field("last_edited_user", "esriFieldTypeString", length=255, editable=False),
        _field("last_edited_date", "esriFieldTypeDate", length=8, editable=False),
    ]


EDIT_FIELDS_INFO = {
    "creationDateField": "created_date",
    "creatorField": "created_user",
    "editDateField": "last_edited_date",
    "editorField": "last_edited_user",
}
CATEGORY_CODES = [(1, "Fountain"), (2, "Viewpoint"), (3, "Building"), (4, "Other")]
STATUS_CODES = [("ok", "In order"), ("damaged", "Damaged"), ("unknown", "Unknown")]
RESULT_CODES = [("pass", "Passed"), ("fail", "Failed"), ("todo", "To do")]
KIND_CODES = [(1, "Road"), (2, "Path"), (3, "Fence"), (4, "Utility")]
_COLORS = {
    1: [0, 112, 255, 255],
    2: [56, 168, 0, 255],
    3: [230, 76, 0, 255],
    4: [130, 130, 130, 255],
}


def _layer_common(
    layer_id: int, name: str, capabilities: str, extent: dict, max_records: int
) -> dict:
    return {
        "currentVersion": 10.91,
        "id": layer_id,
        "name": name,
        "type": "Feature Layer",
        "description": "",
        "copyrightText": "Reference service test data",
        "defaultVisibility": True,
        "isDataVersioned": False,
        "supportsRollbackOnFailureParameter": True,
        "supportsApplyEditsWithGlobalIds": True,
        "supportsAdvancedQueries": True,
        "supportsStatistics": False,
        "supportsAttachmentsByUploadId": False,
        "supportsCalculate": False,
        "syncCanReturnChanges": True,
        "supportsValidateSql": False,
        "supportsCoordinatesQuantization": False,
        "advancedQueryCapabilities": {
            "supportsPagination": True,
            "supportsQueryWithDistance": False,
            "supportsReturningQueryExtent": False,
            "supportsStatistics": False,
            "supportsOrderBy": True,
            "supportsDistinct": False,
            "supportsPaginationOnAggregatedQueries": False,
            "supportsQueryWithResultType": False,
            "supportsReturningGeometryCentroid": False,
        },
        "useStandardizedQueries": True,
        "allowGeometryUpdates": True,
        "hasM": False,
        "hasZ": False,
        "extent": extent,
        "objectIdField": "OBJECTID",
        "globalIdField": "GlobalID",
        "typeIdField": "",
        "types": [],
        "templates": [],
        "maxRecordCount": max_records,
        "standardMaxRecordCount": max_records,
        "supportedQueryFormats": "JSON, geoJSON",
        "capabilities": capabilities,
        "htmlPopupType": "esriServerHTMLPopupTypeNone",
        "relationships": [],
        "hasAttachments": False,
        "editFieldsInfo": None,
        "ownershipBasedAccessControlForFeatures": None,
    }


def _fill_symbol(color: list[int], outline: list[int], width: float) -> dict:
    return {
        "type": "esriSFS",
        "style": "esriSFSSolid",
        "color": color,
        "outline": {"type": "esriSLS", "style": "esriSLSSolid", "color": outline, "width": width},
    }


def _simple_renderer(symbol: dict) -> dict:
    return {
        "renderer": {"type": "simple", "symbol": symbol, "label": "", "description": ""},
        "transparency": 0,
        "labelingInfo": None,
    }


def points_layer(
    layer_id: int, capabilities: str, extent: dict, with_relationship: bool, max_records: int
) -> dict:
    layer = _layer_common(layer_id, "Points", capabilities, extent, max_records)
    layer["geometryType"] = "esriGeometryPoint"
    layer["displayField"] = "name"
    layer["hasAttachments"] = True
    layer["editFieldsInfo"] = dict(EDIT_FIELDS_INFO)
    layer["fields"] = (
        _system_fields()
        + [
            _field("name", "esriFieldTypeString", "Name", length=100),
            _field(
                "category",
                "esriFieldTypeSmallInteger",
                "Category",
                domain=_coded("PointCategory", "short", CATEGORY_CODES),
            ),
            _field(
                "status",
                "esriFieldTypeString",
                "Status",
                length=20,
                domain=_coded("PointStatus", "text", STATUS_CODES),
            ),
            _field("height", "esriFieldTypeDouble", "Height (m)"),
            _field("visits", "esriFieldTypeInteger", "Visits"),
            _field("rating", "esriFieldTypeSingle", "Rating"),
            _field("observed", "esriFieldTypeDate", "Observed", length=8),
            _field("notes", "esriFieldTypeString", "Notes", length=4000),
            _field("ref_id", "esriFieldTypeGUID", "Reference", length=38),
        ]
        + _tracking_fields()
    )
    layer["drawingInfo"] = {
        "renderer": {
            "type": "uniqueValue",
            "field1": "category",
            "field2": None,
            "field3": None,
            "fieldDelimiter": ", ",
            "defaultSymbol": {
                "type": "esriSMS",
                "style": "esriSMSCircle",
                "color": [0, 0, 0, 255],
                "size": 6,
                "angle": 0,
                "xoffset": 0,
                "yoffset": 0,
            },
            "defaultLabel": "Other values",
            "uniqueValueInfos": [
                {
                    "value": str(code),
                    "label": label,
                    "description": "",
                    "symbol": {
                        "type": "esriSMS",
                        "style": "esriSMSCircle",
                        "color": _COLORS[code],
                        "size": 8,
                        "angle": 0,
                        "xoffset": 0,
                        "yoffset": 0,
                        "outline": {"color": [255, 255, 255, 255], "width": 1},
                    },
                }
                for code, label in CATEGORY_CODES
            ],
        },
        "transparency": 0,
        "labelingInfo": [
            {
                "labelExpressionInfo": {"expression": "$feature.name"},
                "labelPlacement": "esriServerPointLabelPlacementAboveCenter",
                "symbol": {
                    "type": "esriTS",
                    "color": [0, 0, 0, 255],
                    "font": {"family": "Arial", "size": 9},
                },
                "minScale": 0,
                "maxScale": 0,
            }
        ],
    }
    if with_relationship:
        layer["relationships"] = [
            {
                "id": 0,
                "name": "Points_Inspections",
                "relatedTableId": 3,
                "cardinality": "esriRelCardinalityOneToMany",
                "role": "esriRelRoleOrigin",
                "keyField": "GlobalID",
                "composite": True,
            }
        ]
    return layer


def lines_layer(extent: dict) -> dict:
    layer = _layer_common(1, "Lines", "Query,Create,Update,Delete,Editing,Sync", extent, 1000)
    layer["geometryType"] = "esriGeometryPolyline"
    layer["displayField"] = "name"
    layer["editFieldsInfo"] = dict(EDIT_FIELDS_INFO)
    layer["fields"] = (
        _system_fields()
        + [
            _field("name", "esriFieldTypeString", "Name", length=100),
            _field(
                "kind",
                "esriFieldTypeInteger",
                "Kind",
                domain=_coded("LineKind", "long", KIND_CODES),
            ),
            _field("length_m", "esriFieldTypeDouble", "Length (m)"),
            _field("built", "esriFieldTypeDate", "Built", length=8),
        ]
        + _tracking_fields()
    )
    layer["drawingInfo"] = _simple_renderer(
        {"type": "esriSLS", "style": "esriSLSSolid", "color": [255, 0, 0, 255], "width": 2}
    )
    return layer


def polygons_layer(extent: dict) -> dict:
    layer = _layer_common(2, "Polygons", "Query,Create,Update,Delete,Editing,Sync", extent, 1000)
    layer["geometryType"] = "esriGeometryPolygon"
    layer["displayField"] = "name"
    layer["fields"] = _system_fields() + [
        _field("name", "esriFieldTypeString", "Name", length=100),
        _field("zone", "esriFieldTypeString", "Zone", length=10),
        _field("area_ha", "esriFieldTypeDouble", "Area (ha)"),
        _field("owner_count", "esriFieldTypeSmallInteger", "Owners"),
    ]
    layer["drawingInfo"] = _simple_renderer(_fill_symbol([76, 129, 205, 120], [0, 0, 0, 255], 1))
    return layer


def inspections_table(extent: dict) -> dict:
    table = _layer_common(3, "Inspections", "Query,Create,Update,Delete,Editing,Sync", extent, 1000)
    table["type"] = "Table"
    del table["extent"]
    table["displayField"] = "inspector"
    table["editFieldsInfo"] = dict(EDIT_FIELDS_INFO)
    table["fields"] = (
        _system_fields()
        + [
            _field("PointGlobalID", "esriFieldTypeGUID", "Point", length=38),
            _field("inspector", "esriFieldTypeString", "Inspector", length=50),
            _field("inspected", "esriFieldTypeDate", "Inspected", length=8),
            _field(
                "result",
                "esriFieldTypeString",
                "Result",
                length=10,
                domain=_coded("InspectionResult", "text", RESULT_CODES),
            ),
            _field("remarks", "esriFieldTypeString", "Remarks", length=1000),
        ]
        + _tracking_fields()
    )
    table["relationships"] = [
        {
            "id": 0,
            "name": "Points_Inspections",
            "relatedTableId": 0,
            "cardinality": "esriRelCardinalityOneToMany",
            "role": "esriRelRoleDestination",
            "keyField": "PointGlobalID",
            "composite": True,
        }
    ]
    table.pop("drawingInfo", None)
    return table


def service_definition(
    capabilities: str, extent: dict, layers: list[dict], sync: bool, description: str
) -> dict:
    spatial = [lay for lay in layers if lay["type"] != "Table"]
    tables = [lay for lay in layers if lay["type"] == "Table"]
    definition = {
        "currentVersion": 10.91,
        "serviceDescription": description,
        "description": description,
        "copyrightText": "Reference service test data",
        "hasVersionedData": False,
        "supportsDisconnectedEditing": sync,
        "supportsApplyEditsWithGlobalIds": True,
        "supportsRelationshipsResource": True,
        "syncEnabled": sync,
        "supportedQueryFormats": "JSON",
        "maxRecordCount": max(lay["maxRecordCount"] for lay in layers),
        "capabilities": capabilities,
        "spatialReference": SR,
        "initialExtent": extent,
        "fullExtent": extent,
        "allowGeometryUpdates": True,
        "units": "esriMeters",
        "size": 0,
        "layers": [
            {
                "id": lay["id"],
                "name": lay["name"],
                "parentLayerId": -1,
                "defaultVisibility": True,
                "subLayerIds": None,
                "minScale": 0,
                "maxScale": 0,
                "geometryType": lay["geometryType"],
            }
            for lay in spatial
        ],
        "tables": [{"id": t["id"], "name": t["name"]} for t in tables],
        "relationships": (
            [{"id": 0, "name": "Points_Inspections"}]
            if any(lay.get("relationships") for lay in layers)
            else []
        ),
        "enableZDefaults": False,
        "editorTrackingInfo": {
            "enableEditorTracking": True,
            "enableOwnershipAccessControl": False,
            "allowOthersToUpdate": True,
            "allowOthersToDelete": True,
        },
    }
    if sync:
        definition["syncCapabilities"] = {
            "supportsAsync": True,
            "supportsRegisteringExistingData": True,
            "supportsSyncDirectionControl": True,
            "supportsPerLayerSync": True,
            "supportsPerReplicaSync": True,
            "supportsSyncModelNone": True,
            "supportsRollbackOnFailure": True,
            "supportsAttachmentsSyncDirection": True,
            "supportsBiDirectionalSyncForServer": True,
        }
    return definition


def _extent(xmin, ymin, xmax, ymax) -> dict:
    return {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax, "spatialReference": SR}


def _ring(center, radius_m, n=6, clockwise=True, angle0=0.0):
    cx, cy = center
    pts = []
    for i in range(n):
        a = angle0 + (2 * math.pi * i / n) * (-1 if clockwise else 1)
        pts.append([round(cx + radius_m * math.cos(a), 3), round(cy + radius_m * math.sin(a), 3)])
    pts.append(list(pts[0]))
    return pts


def _box(xmin, ymin, xmax, ymax, clockwise=True):
    ring = [[xmin, ymin], [xmin, ymax], [xmax, ymax], [xmax, ymin], [xmin, ymin]]
    return ring if clockwise else list(reversed(ring))


def _png_bytes(seed: int) -> bytes:
    """A tiny valid PNG (one coloured pixel)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
        )

    raw = b"\x00" + bytes([seed * 40 % 256, seed * 70 % 256, seed * 110 % 256])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", (1).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00")
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


BASE_LON, BASE_LAT = 8.54, 47.37  # Zürich

# The demo web map's basemap: the reference service's tiled and vector tile basemaps (tiles.py).
DEMO_BASEMAP = {
    "title": "Demo basemap",
    "baseMapLayers": [
        {
            "id": "demo_topo",
            "title": "Demo topographic",
            "layerType": "ArcGISTiledMapServiceLayer",
            "url": "{services}/" + BASEMAP_SERVICE + "/MapServer",
            "visibility": True,
            "opacity": 1,
        },
        {
            "id": "demo_vector",
            "title": "Demo streets",
            "layerType": "VectorTileLayer",
            "styleUrl": "{services}/"
            + VECTOR_BASEMAP_SERVICE
            + "/VectorTileServer/resources/styles/root.json",
            "visibility": True,
            "opacity": 1,
        },
    ],
}


def demo_points() -> list[dict]:
    out = []
    for i, name in enumerate(POINT_NAMES):
        x, y = mercator(BASE_LON + 0.004 * (i % 4), BASE_LAT + 0.003 * (i // 4))
        category = CATEGORY_CODES[i % 4][0]
        out.append(
            {
                "GlobalID": guid(DEMO_SERVICE, 0, i),
                "name": name,
                "category": category,
                "status": STATUS_CODES[i % 3][0],
                "height": round(400.5 + i * 3.25, 2),
                "visits": i * 7,
                "rating": (i % 5) + 0.5,
                "observed": millis(2024, 1 + i % 12, 1 + i, 8 + i % 10, 30) if i != 3 else None,
                "notes": None if i % 4 == 3 else f"Note {i}: äöü ß € 100% + & \" \\ '",
                "ref_id": guid("ref", i) if i % 2 == 0 else None,
                "created_user": "seed",
                "created_date": millis(2024, 5, 1),
                "last_edited_user": "seed",
                "last_edited_date": millis(2024, 5, 1),
                "_geometry": {"x": x, "y": y},
            }
        )
    return out


def demo_lines() -> list[dict]:
    out = []
    for i, name in enumerate(LINE_NAMES):
        x0, y0 = mercator(BASE_LON - 0.002, BASE_LAT - 0.002 + 0.0025 * i)
        paths = [[[x0, y0], [x0 + 300, y0 + 40], [x0 + 620, y0 - 15]]]
        if i == 2:  # a multipart line
            paths.append([[x0, y0 - 120], [x0 + 200, y0 - 150]])
        length = sum(math.dist(p[j], p[j + 1]) for p in paths for j in range(len(p) - 1))
        out.append(
            {
                "GlobalID": guid(DEMO_SERVICE, 1, i),
                "name": name,
                "kind": KIND_CODES[i % 4][0],
                "length_m": round(length, 2),
                "built": millis(1990 + i, 6, 15),
                "created_user": "seed",
                "created_date": millis(2024, 5, 1),
                "last_edited_user": "seed",
                "last_edited_date": millis(2024, 5, 1),
                "_geometry": {"paths": paths},
            }
        )
    return out


def demo_polygons() -> list[dict]:
    cx, cy = mercator(BASE_LON + 0.006, BASE_LAT + 0.004)
    shapes = [
        # park with a pond: outer ring clockwise, hole anticlockwise
        [
            _box(cx, cy, cx + 400, cy + 300),
            _box(cx + 150, cy + 100, cx + 250, cy + 200, clockwise=False),
        ],
        # two separate fields
        [_box(cx + 600, cy, cx + 800, cy + 150), _box(cx + 900, cy, cx + 1100, cy + 150)],
        # forest: multipart, one part with a hole
        [
            _box(cx, cy - 800, cx + 500, cy - 400),
            _box(cx + 100, cy - 700, cx + 200, cy - 600, clockwise=False),
            _ring((cx + 800, cy - 600), 150, n=8),
        ],
        [_ring((cx - 400, cy - 200), 120, n=6)],
    ]
    out = []
    for i, name in enumerate(POLYGON_NAMES):
        out.append(
            {
                "GlobalID": guid(DEMO_SERVICE, 2, i),
                "name": name,
                "zone": ["A", "B", "C&D", "Z'1"][i],
                "area_ha": round(1.2 + i * 0.75, 3),
                "owner_count": i + 1,
                "_geometry": {"rings": shapes[i]},
            }
        )
    return out


def demo_inspections() -> list[dict]:
    out = []
    for i in range(DEMO_COUNTS[3]):
        out.append(
            {
                "GlobalID": guid(DEMO_SERVICE, 3, i),
                "PointGlobalID": guid(DEMO_SERVICE, 0, i % 4),
                "inspector": ["Anna", "Björn", "Zoë", "O'Brien"][i % 4],
                "inspected": millis(2024, 3, 1 + i, 10),
                "result": RESULT_CODES[i % 3][0],
                "remarks": None if i % 3 == 2 else f'Remark {i} — ok & fine; 5% "quoted"',
                "created_user": "seed",
                "created_date": millis(2024, 5, 1),
                "last_edited_user": "seed",
                "last_edited_date": millis(2024, 5, 1),
            }
        )
    return out


def _bbox(geometry: dict | None):
    from .geom import bbox

    return bbox(geometry) or (None, None, None, None)


def _insert(tx: Tx, service: str, layer_id: int, rows: list[dict]) -> None:
    layer = tx.layer(service, layer_id)
    names = [n for n in layer.field_names() if n != layer.oid_field]
    data = []
    for row in rows:
        geometry = row.get("_geometry")
        data.append(
            tuple(row.get(n) for n in names)
            + (json.dumps(geometry) if geometry else None, *_bbox(geometry))
        )
    tx.bulk_insert(layer, names, data)


def _demo_attachments(tx: Tx, service: str) -> None:
    layer = tx.layer(service, 0)
    for i in (0, 1, 4):
        parent = guid(service, 0, i)
        tx.insert_attachment(
            layer,
            guid(service, "att", i, 0),
            parent,
            f"photo_{i}.png",
            "image/png",
            _png_bytes(i),
            1,
        )
        if i == 4:
            text = 'Notiz: Größe & Preis 100% + "ok"\n'.encode()
            tx.insert_attachment(
                layer, guid(service, "att", i, 1), parent, "notiz ü.txt", "text/plain", text, 1
            )


def seed_demo(tx: Tx) -> None:
    """Demo (full sync + editing), ReadOnly (Query,Sync: download-only), NoSync, and a web map."""
    points, lines, polygons = demo_points(), demo_lines(), demo_polygons()
    all_geoms = [r["_geometry"] for r in points + lines + polygons]
    boxes = [_bbox(g) for g in all_geoms]
    extent = _extent(
        min(b[0] for b in boxes) - 100,
        min(b[1] for b in boxes) - 100,
        max(b[2] for b in boxes) + 100,
        max(b[3] for b in boxes) + 100,
    )
    full = "Query,Create,Update,Delete,Uploads,Editing,Sync"
    layers = [
        points_layer(0, "Query,Create,Update,Delete,Uploads,Editing,Sync", extent, True, 1000),
        lines_layer(extent),
        polygons_layer(extent),
        inspections_table(extent),
    ]
    tx.create_service(
        DEMO_SERVICE,
        service_definition(full, extent, layers, True, "Demo data for Offline Map Sync"),
        layers,
    )
    _insert(tx, DEMO_SERVICE, 0, points)
    _insert(tx, DEMO_SERVICE, 1, lines)
    _insert(tx, DEMO_SERVICE, 2, polygons)
    _insert(tx, DEMO_SERVICE, 3, demo_inspections())
    _demo_attachments(tx, DEMO_SERVICE)

    ro_layer = points_layer(0, "Query,Sync", extent, False, 1000)
    tx.create_service(
        READONLY_SERVICE,
        service_definition("Query,Sync", extent, [ro_layer], True, "Download-only service"),
        [ro_layer],
    )
    ro_points = [dict(p, GlobalID=guid(READONLY_SERVICE, 0, i)) for i, p in enumerate(points)]
    _insert(tx, READONLY_SERVICE, 0, ro_points)
    _demo_attachments(tx, READONLY_SERVICE)

    ns_layer = points_layer(0, "Query,Create,Update,Delete,Editing", extent, False, 1000)
    tx.create_service(
        NOSYNC_SERVICE,
        service_definition(
            "Query,Create,Update,Delete,Editing", extent, [ns_layer], False, "Service without sync"
        ),
        [ns_layer],
    )
    _insert(
        tx,
        NOSYNC_SERVICE,
        0,
        [dict(p, GlobalID=guid(NOSYNC_SERVICE, 0, i)) for i, p in enumerate(points)],
    )

    webmap_item = {
        "id": DEMO_WEBMAP_ID,
        "owner": "seed",
        "title": "Demo offline map",
        "type": "Web Map",
        "typeKeywords": [
            "ArcGIS Online",
            "Data Editing",
            "Explorer Web Map",
            "Map",
            "Offline",
            "Online Map",
            "Web Map",
        ],
        "description": "A web map over the Demo service, for taking offline.",
        "snippet": "Demo web map",
        "tags": ["demo"],
        "extent": [[BASE_LON - 0.01, BASE_LAT - 0.01], [BASE_LON + 0.02, BASE_LAT + 0.015]],
        "spatialReference": "102100",
        "access": "public",
        "created": millis(2024, 5, 1),
        "modified": millis(2024, 5, 1),
        "properties": None,
        "url": None,
    }
    webmap_data = {
        "operationalLayers": [
            {
                "id": f"demo_{lay['id']}",
                "title": lay["name"],
                "url": "{services}/" + DEMO_SERVICE + f"/FeatureServer/{lay['id']}",
                "layerType": "ArcGISFeatureLayer",
                "visibility": True,
                "opacity": 1,
                "itemId": None,
            }
            for lay in reversed(layers[:3])
        ],
        "tables": [
            {
                "id": "demo_3",
                "title": "Inspections",
                "url": "{services}/" + DEMO_SERVICE + "/FeatureServer/3",
                "layerType": "ArcGISFeatureLayer",
            }
        ],
        "baseMap": DEMO_BASEMAP,
        "spatialReference": SR,
        "initialState": {"viewpoint": {"targetGeometry": extent}},
        "version": "2.27",
        "authoringApp": "tests.featureservice",
        "authoringAppVersion": "1",
    }
    tx.save_item(DEMO_WEBMAP_ID, webmap_item, webmap_data)
    settings_data = dict(
        webmap_data,
        operationalLayers=[
            *webmap_data["operationalLayers"],
            {
                "id": "readonly_0",
                "title": "Read-only points",
                "url": "{services}/" + READONLY_SERVICE + "/FeatureServer/0",
                "layerType": "ArcGISFeatureLayer",
            },
        ],
        applicationProperties={"offline": OFFLINE_SETTINGS},
    )
    settings_item = dict(
        webmap_item,
        id=OFFLINE_SETTINGS_WEBMAP_ID,
        title="Demo map with offline settings",
        snippet="Demo web map whose author chose what goes offline",
    )
    tx.save_item(OFFLINE_SETTINGS_WEBMAP_ID, settings_item, settings_data)


# --- Parcels: true curves and rings as real services send them ---------------------------------
# A service on enterprise data that stores true curves (circular arcs "c", an elliptic arc "a",
# a Bézier "b", an old-style circular "a"), and a polygon layer whose rings follow Esri's winding
# rule loosely. Kept out of the demo web map so that the Demo counts stay as they are.

TRUE_CURVE_FLAGS = {
    "supportsTrueCurve": True,
    "allowTrueCurvesUpdates": True,
    "onlyAllowTrueCurveUpdatesByTrueCurveClients": True,
}


def _named_layer(layer_id: int, name: str, geometry_type: str, extent: dict) -> dict:
    layer = _layer_common(layer_id, name, "Query,Create,Update,Delete,Editing,Sync", extent, 1000)
    layer["geometryType"] = geometry_type
    layer["displayField"] = "name"
    layer["fields"] = _system_fields() + [
        _field("name", "esriFieldTypeString", "Name", length=100),
        _field("parcel_no", "esriFieldTypeInteger", "Parcel number"),
    ]
    if geometry_type == "esriGeometryPolyline":
        symbol = {
            "type": "esriSLS",
            "style": "esriSLSSolid",
            "color": [168, 0, 132, 255],
            "width": 2,
        }
    else:
        symbol = _fill_symbol([255, 190, 120, 140], [120, 60, 0, 255], 1.5)
    layer["drawingInfo"] = _simple_renderer(symbol)
    return layer


def parcels_geometries() -> dict[int, list[dict]]:
    """Layer id -> Esri JSON geometries of the Parcels service (Web Mercator metres)."""
    x, y = mercator(BASE_LON - 0.006, BASE_LAT + 0.006)
    # Clockwise outer rings (Esri), arcs given by end point and a point on the arc.
    lot = [[x, y], [x, y + 60], {"c": [[x + 60, y + 60], [x + 30, y + 90]]}, [x + 60, y], [x, y]]
    px, py = x + 150, y + 30
    plaza = [
        [px, py - 30],
        {"c": [[px, py + 30], [px - 30, py]]},
        {"c": [[px, py - 30], [px + 30, py]]},
    ]
    gx, gy = x + 260, y
    # Half an ellipse (semi-axes 50 and 25) over a straight south side, drawn clockwise.
    oval = [[gx - 50, gy], {"a": [[gx + 50, gy], [gx, gy], 1, 1, 0.0, 50.0, 0.5]}, [gx - 50, gy]]
    yx, yy = x, y - 150
    yard = [[yx, yy], [yx, yy + 100], [yx + 100, yy + 100], [yx + 100, yy], [yx, yy]]
    pond = [[yx + 30, yy + 30], {"c": [[yx + 70, yy + 30], [yx + 50, yy + 10]]}, [yx + 30, yy + 30]]
    cx, cy = x, y - 260
    curb = [
        [cx, cy],
        [cx + 40, cy],
        {"c": [[cx + 70, cy + 30], [cx + 61.213, cy + 8.787]]},
        [cx + 70, cy + 80],
    ]
    path = [[cx + 120, cy], {"b": [[cx + 220, cy], [cx + 150, cy + 60], [cx + 190, cy - 60]]}]
    old_arc = [[cx + 260, cy], {"a": [[cx + 320, cy], [cx + 290, cy], 1, 1]}]
    ox, oy = x + 400, y - 150
    island = _box(ox, oy, ox + 80, oy + 80)
    backwards = _box(ox + 120, oy, ox + 200, oy + 80, clockwise=False)  # disjoint, CCW
    building = _box(ox, oy - 200, ox + 120, oy - 80)
    courtyard = _box(ox + 30, oy - 170, ox + 90, oy - 110)  # inside, clockwise like its building
    return {
        0: [
            {"curveRings": [lot]},
            {"curveRings": [plaza]},
            {"curveRings": [oval]},
            {"curveRings": [yard, pond]},
        ],
        1: [{"curvePaths": [curb]}, {"curvePaths": [path]}, {"curvePaths": [old_arc]}],
        2: [{"rings": [island, backwards]}, {"rings": [building, courtyard]}],
    }


def seed_parcels(tx: Tx) -> None:
    geometries = parcels_geometries()
    boxes = [_bbox(g) for gs in geometries.values() for g in gs]
    extent = _extent(
        min(b[0] for b in boxes) - 50,
        min(b[1] for b in boxes) - 50,
        max(b[2] for b in boxes) + 50,
        max(b[3] for b in boxes) + 50,
    )
    layers = [
        {**_named_layer(0, "Parcels", "esriGeometryPolygon", extent), **TRUE_CURVE_FLAGS},
        {**_named_layer(1, "Curbs", "esriGeometryPolyline", extent), **TRUE_CURVE_FLAGS},
        {**_named_layer(2, "Odd rings", "esriGeometryPolygon", extent), **TRUE_CURVE_FLAGS},
    ]
    definition = service_definition(
        "Query,Create,Update,Delete,Editing,Sync", extent, layers, True, "Parcels with true curves"
    )
    definition.update(TRUE_CURVE_FLAGS)
    tx.create_service(PARCELS_SERVICE, definition, layers)
    names = {0: PARCEL_NAMES, 1: CURB_NAMES, 2: ODD_RING_NAMES}
    for layer_id, shapes in geometries.items():
        rows = [
            {
                "GlobalID": guid(PARCELS_SERVICE, layer_id, i),
                "name": names[layer_id][i],
                "parcel_no": 100 * (layer_id + 1) + i,
                "_geometry": shape,
            }
            for i, shape in enumerate(shapes)
        ]
        _insert(tx, PARCELS_SERVICE, layer_id, rows)


def seed_large(tx: Tx, count: int, seed: int = 42) -> None:
    """A service "Large" with one point layer (0) of `count` features with 10 attributes."""
    rng = random.Random(seed)
    side = max(1, int(math.sqrt(count)))
    x0, y0 = mercator(BASE_LON - 0.2, BASE_LAT - 0.15)
    step = 25.0
    extent = _extent(x0 - 10, y0 - 10, x0 + side * step + 10, y0 + (count // side + 1) * step + 10)
    layer = _layer_common(0, "LargePoints", "Query,Create,Update,Delete,Editing,Sync", extent, 2000)
    layer["geometryType"] = "esriGeometryPoint"
    layer["displayField"] = "name"
    layer["fields"] = _system_fields() + [
        _field("name", "esriFieldTypeString", length=50),
        _field(
            "category",
            "esriFieldTypeSmallInteger",
            domain=_coded("LargeCategory", "short", CATEGORY_CODES),
        ),
        _field("value", "esriFieldTypeDouble"),
        _field("counter", "esriFieldTypeInteger"),
        _field("observed", "esriFieldTypeDate", length=8),
        _field("code", "esriFieldTypeString", length=10),
        _field("flag", "esriFieldTypeSmallInteger"),
        _field("score", "esriFieldTypeSingle"),
        _field("note", "esriFieldTypeString", length=255),
        _field("ref_id", "esriFieldTypeGUID", length=38),
    ]
    layer["drawingInfo"] = _simple_renderer(
        {
            "type": "esriSMS",
            "style": "esriSMSCircle",
            "color": [200, 0, 0, 255],
            "size": 4,
            "angle": 0,
            "xoffset": 0,
            "yoffset": 0,
        }
    )
    tx.create_service(
        LARGE_SERVICE,
        service_definition(
            "Query,Create,Update,Delete,Editing,Sync",
            extent,
            [layer],
            True,
            "Large generated dataset",
        ),
        [layer],
    )
    target = tx.layer(LARGE_SERVICE, 0)
    names = [n for n in target.field_names() if n != "OBJECTID"]
    base = millis(2020, 1, 1)
    batch = []
    for i in range(count):
        x, y = x0 + (i % side) * step, y0 + (i // side) * step
        gid = "{" + str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper() + "}"
        batch.append(
            (
                gid,
                f"Feature {i}",
                1 + i % 4,
                round(rng.uniform(0, 1000), 3),
                i,
                base + i * 60000,
                f"C{i % 1000:03d}",
                i % 2,
                round(rng.random() * 5, 2),
                "note " + base64.b32encode(i.to_bytes(4, "big")).decode(),
                None,
                f'{{"x": {x}, "y": {y}}}',
                x,
                y,
                x,
                y,
            )
        )
        if len(batch) >= 20000:
            tx.bulk_insert(target, names, batch)
            batch = []
    if batch:
        tx.bulk_insert(target, names, batch)
