"""Layer JSON (the reference seed's "Demo" schema, see tests/featureservice/seed.py) and
features for the geodatabase tests (no server needed): Points (attachments, coded-value
domains, dates, editor tracking), Lines, Polygons (holes, multipart) and the related table
Inspections."""

from __future__ import annotations

import base64
import uuid

from plugin.core.enums import SyncModel
from plugin.core.geodatabase import Geodatabase
from tests.featureservice import seed

SERVICE_URL = "http://127.0.0.1:1/arcgis/rest/services/Demo/FeatureServer"
SR = seed.SR
CAPABILITIES = "Query,Create,Update,Delete,Editing,Sync"
EXTENT = {"xmin": 0, "ymin": 0, "xmax": 1000, "ymax": 1000, "spatialReference": SR}

# The reference seed's schema, with what the geodatabase tests pin on top: shorter domains, and
# field types the reference service does not serve (BigInteger, DateOnly, a read-only field).
_DOMAINS = {
    "category": seed._coded(
        "PointCategory", "short", [(1, "Fountain"), (2, "Viewpoint"), (3, "Other")]
    ),
    "status": seed._coded("PointStatus", "text", [("ok", "In order"), ("damaged", "Damaged")]),
}
_EXTRA_POINT_FIELDS = {  # inserted after the named field
    "rating": seed._field("big", "esriFieldTypeBigInteger", "Big number"),
    "observed": seed._field("day", "esriFieldTypeDateOnly", "Day"),
    "ref_id": seed._field("Shape__Area", "esriFieldTypeDouble", editable=False),
}


def new_guid() -> str:
    return "{" + str(uuid.uuid4()).upper() + "}"


def points_layer() -> dict:
    layer = seed.points_layer(0, CAPABILITIES, dict(EXTENT), True, 1000)
    fields = []
    for item in layer["fields"]:
        if item["name"] in _DOMAINS:
            item = dict(item, domain=_DOMAINS[item["name"]])
        fields.append(item)
        if item["name"] in _EXTRA_POINT_FIELDS:
            fields.append(_EXTRA_POINT_FIELDS[item["name"]])
    layer["fields"] = fields
    return layer


def lines_layer() -> dict:
    return seed.lines_layer(dict(EXTENT))


def polygons_layer() -> dict:
    return seed.polygons_layer(dict(EXTENT))


def inspections_table() -> dict:
    return seed.inspections_table(dict(EXTENT))


def layer_infos() -> dict[int, dict]:
    return {0: points_layer(), 1: lines_layer(), 2: polygons_layer(), 3: inspections_table()}


def service_info() -> dict:
    layers = list(layer_infos().values())
    return seed.service_definition(CAPABILITIES, dict(EXTENT), layers, True, "Demo-like service")


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


# make_gdb's parameters shadow the module's functions of the same names.
_DEFAULT_SERVICE_INFO = service_info
_DEFAULT_LAYER_INFOS = layer_infos


def make_gdb(path, layer_infos=None, service_info=None) -> Geodatabase:
    """An empty geodatabase for the Demo-like service (or the given layer/service JSON)."""
    return Geodatabase.create(
        str(path),
        service_url=SERVICE_URL,
        service_info=service_info or _DEFAULT_SERVICE_INFO(),
        layer_infos=layer_infos or _DEFAULT_LAYER_INFOS(),
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
