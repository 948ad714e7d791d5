"""Layer JSON and features shaped like the reference service's "Demo" service, for the
geodatabase tests (no server needed): Points (attachments, coded-value domains, dates, editor
tracking), Lines, Polygons (holes, multipart) and the related table Inspections."""

from __future__ import annotations

import base64
import uuid

from plugin.core.enums import SyncModel
from plugin.core.geodatabase import Geodatabase

SERVICE_URL = "http://127.0.0.1:1/arcgis/rest/services/Demo/FeatureServer"
SR = {"wkid": 102100, "latestWkid": 3857}
EDIT_FIELDS_INFO = {
    "creationDateField": "created_date",
    "creatorField": "created_user",
    "editDateField": "last_edited_date",
    "editorField": "last_edited_user",
}


def new_guid() -> str:
    return "{" + str(uuid.uuid4()).upper() + "}"


def _field(name, ftype, alias=None, length=None, editable=True, domain=None, nullable=True):
    f = {"name": name, "type": ftype, "alias": alias or name, "nullable": nullable}
    f["editable"] = editable
    f["domain"] = domain
    if length is not None:
        f["length"] = length
    return f


def _coded(name, codes):
    return {
        "type": "codedValue",
        "name": name,
        "description": "",
        "codedValues": [{"name": label, "code": code} for code, label in codes],
    }


def _system():
    return [
        _field("OBJECTID", "esriFieldTypeOID", editable=False, nullable=False),
        _field("GlobalID", "esriFieldTypeGlobalID", length=38, editable=False, nullable=False),
    ]


def _tracking():
    return [
        _field("created_user", "esriFieldTypeString", length=255, editable=False),
        _field("created_date", "esriFieldTypeDate", length=8, editable=False),
        _field("last_edited_user", "esriFieldTypeString", length=255, editable=False),
        _field("last_edited_date", "esriFieldTypeDate", length=8, editable=False),
    ]


def _common(layer_id, name, geometry_type=None):
    layer = {
        "id": layer_id,
        "name": name,
        "type": "Feature Layer" if geometry_type else "Table",
        "objectIdField": "OBJECTID",
        "globalIdField": "GlobalID",
        "hasZ": False,
        "hasM": False,
        "hasAttachments": False,
        "relationships": [],
        "capabilities": "Query,Create,Update,Delete,Editing,Sync",
        "editFieldsInfo": None,
    }
    if geometry_type:
        layer["geometryType"] = geometry_type
        layer["extent"] = {
            "xmin": 0,
            "ymin": 0,
            "xmax": 1000,
            "ymax": 1000,
            "spatialReference": SR,
        }
    return layer


def points_layer() -> dict:
    layer = _common(0, "Points", "esriGeometryPoint")
    layer["hasAttachments"] = True
    layer["editFieldsInfo"] = dict(EDIT_FIELDS_INFO)
    layer["fields"] = (
        _system()
        + [
            _field("name", "esriFieldTypeString", "Name", length=100),
            _field(
                "category",
                "esriFieldTypeSmallInteger",
                "Category",
                domain=_coded("PointCategory", [(1, "Fountain"), (2, "Viewpoint"), (3, "Other")]),
            ),
            _field(
                "status",
                "esriFieldTypeString",
                "Status",
                length=20,
                domain=_coded("PointStatus", [("ok", "In order"), ("damaged", "Damaged")]),
            ),
            _field("height", "esriFieldTypeDouble", "Height (m)"),
            _field("visits", "esriFieldTypeInteger", "Visits"),
            _field("rating", "esriFieldTypeSingle", "Rating"),
            _field("big", "esriFieldTypeBigInteger", "Big number"),
            _field("observed", "esriFieldTypeDate", "Observed", length=8),
            _field("day", "esriFieldTypeDateOnly", "Day"),
            _field("notes", "esriFieldTypeString", "Notes", length=4000),
            _field("ref_id", "esriFieldTypeGUID", "Reference", length=38),
            _field("Shape__Area", "esriFieldTypeDouble", editable=False),
        ]
        + _tracking()
    )
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


def lines_layer() -> dict:
    layer = _common(1, "Lines", "esriGeometryPolyline")
    layer["fields"] = _system() + [
        _field("name", "esriFieldTypeString", "Name", length=100),
        _field("length_m", "esriFieldTypeDouble", "Length (m)"),
    ]
    return layer


def polygons_layer() -> dict:
    layer = _common(2, "Polygons", "esriGeometryPolygon")
    layer["fields"] = _system() + [
        _field("name", "esriFieldTypeString", "Name", length=100),
        _field("owner_count", "esriFieldTypeSmallInteger", "Owners"),
    ]
    return layer


def inspections_table() -> dict:
    table = _common(3, "Inspections")
    table["editFieldsInfo"] = dict(EDIT_FIELDS_INFO)
    table["fields"] = (
        _system()
        + [
            _field("PointGlobalID", "esriFieldTypeGUID", "Point", length=38),
            _field("inspector", "esriFieldTypeString", "Inspector", length=50),
            _field("inspected", "esriFieldTypeDate", "Inspected", length=8),
        ]
        + _tracking()
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
    return table


def layer_infos() -> dict[int, dict]:
    return _layer_infos()


def _layer_infos() -> dict[int, dict]:
    return {0: points_layer(), 1: lines_layer(), 2: polygons_layer(), 3: inspections_table()}


def service_info() -> dict:
    return _service_info()


def _service_info() -> dict:
    return {
        "currentVersion": 10.91,
        "capabilities": "Query,Create,Update,Delete,Editing,Sync",
        "syncEnabled": True,
        "spatialReference": dict(SR),
        "layers": [
            {"id": 0, "name": "Points", "geometryType": "esriGeometryPoint"},
            {"id": 1, "name": "Lines", "geometryType": "esriGeometryPolyline"},
            {"id": 2, "name": "Polygons", "geometryType": "esriGeometryPolygon"},
        ],
        "tables": [{"id": 3, "name": "Inspections"}],
    }


TRICKY_TEXT = 'Plus + and & "quoted" back\\slash apos\'trophe 100% Zürich 東京'
OBSERVED_MS = 1_700_000_123_456  # 2023-11-14T22:15:23.456Z


def point_feature(i: int, *, gid: str | None = None, **attrs) -> dict:
    values = {
        "OBJECTID": i,
        "GlobalID": gid or new_guid(),
        "name": f"Point {i}",
        "category": 1 + i % 3,
        "status": "ok",
        "height": 10.5 + i,
        "visits": i * 3,
        "rating": 2.5,
        "big": 2**40 + i,
        "observed": OBSERVED_MS + i,
        "day": "2024-02-29",
        "notes": TRICKY_TEXT,
        "ref_id": new_guid(),
        "Shape__Area": 0.0,
        "created_user": "alice",
        "created_date": OBSERVED_MS,
        "last_edited_user": "alice",
        "last_edited_date": OBSERVED_MS,
    }
    values.update(attrs)
    return {"attributes": values, "geometry": {"x": 100.0 + i, "y": 200.0 + i}}


def line_feature(i: int, *, gid: str | None = None) -> dict:
    return {
        "attributes": {
            "OBJECTID": i,
            "GlobalID": gid or new_guid(),
            "name": f"Line {i}",
            "length_m": 1.5,
        },
        "geometry": {"paths": [[[0.0, 0.0], [10.0, float(i)]], [[20.0, 20.0], [30.0, 35.5]]]},
    }


def polygon_feature(i: int, *, gid: str | None = None) -> dict:
    return {
        "attributes": {"OBJECTID": i, "GlobalID": gid or new_guid(), "name": f"Poly {i}"},
        "geometry": {
            "rings": [
                [[0.0, 0.0], [0.0, 100.0], [100.0, 100.0], [100.0, 0.0], [0.0, 0.0]],
                [[10.0, 10.0], [20.0, 10.0], [20.0, 20.0], [10.0, 20.0], [10.0, 10.0]],
                [[200.0, 0.0], [200.0, 50.0], [250.0, 50.0], [200.0, 0.0]],
            ]
        },
    }


def inspection_row(i: int, point_gid: str, *, gid: str | None = None) -> dict:
    return {
        "attributes": {
            "OBJECTID": i,
            "GlobalID": gid or new_guid(),
            "PointGlobalID": point_gid,
            "inspector": f"Inspector {i}",
            "inspected": OBSERVED_MS - 86_400_000 * i,
        }
    }


def attachment(parent_gid: str, *, gid: str | None = None, data: bytes = b"\x89PNG...") -> dict:
    return {
        "globalId": gid or new_guid(),
        "parentGlobalId": parent_gid,
        "name": "photo.png",
        "contentType": "image/png",
        "size": len(data),
        "data": base64.b64encode(data).decode("ascii"),
    }


def replica_header(
    server_gen: int = 100, replica_id: str = "{5D1A7E9C-1111-4222-8333-944455556666}"
):
    return {
        "replicaName": "test replica",
        "replicaID": replica_id,
        "responseType": "esriReplicaResponseTypeData",
        "syncModel": "perReplica",
        "replicaServerGen": server_gen,
    }


def sync_header(server_gen: int) -> dict:
    return {
        "replicaID": "{5D1A7E9C-1111-4222-8333-944455556666}",
        "responseType": "esriReplicaResponseTypeEdits",
        "replicaServerGen": server_gen,
    }


def edits_to_events(edits: list[dict]):
    """The jsonstream events of a synchronizeReplica result's ``edits`` list (spec §3 shape)."""
    for entry in edits:
        lid = entry["id"]
        for group in ("features", "attachments"):
            for key in ("adds", "updates", "deleteIds"):
                for item in (entry.get(group) or {}).get(key) or []:
                    yield lid, f"{group}.{key}", item
        for key in ("addResults", "updateResults", "deleteResults"):
            for item in entry.get(key) or []:
                yield lid, key, item
        for key, items in (entry.get("attachmentResults") or {}).items():
            for item in items:
                yield lid, f"attachmentResults.{key}", item


def make_gdb(path, layer_infos=None, service_info=None) -> Geodatabase:
    """An empty geodatabase for the Demo-like service (or the given layer/service JSON)."""
    return Geodatabase.create(
        str(path),
        service_url=SERVICE_URL,
        service_info=service_info or _service_info(),
        layer_infos=layer_infos or _layer_infos(),
        replica_name="test replica",
        sync_model=SyncModel.PER_REPLICA,
    )


def demo_events(n_points: int = 5):
    """(points, createReplica events): points, two lines, a polygon, three inspections of the
    first point and one attachment on it."""
    points = [point_feature(i) for i in range(1, n_points + 1)]
    first = points[0]["attributes"]["GlobalID"]
    events = [(0, "features", p) for p in points]
    events += [(1, "features", line_feature(i)) for i in (1, 2)]
    events += [(2, "features", polygon_feature(1))]
    events += [(3, "features", inspection_row(i, first)) for i in (1, 2, 3)]
    events += [(0, "attachments", attachment(first, data=b"\x00\x01binary\xff"))]
    return points, events
