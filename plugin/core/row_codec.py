"""Rows between Esri JSON (features, attachments) and GeoPackage columns, per layer."""

from __future__ import annotations

import base64
from typing import Any, Callable

from . import field_values as fv
from .errors import UnsupportedGeometryError
from .geodatabase_model import LayerDef
from .geometry import geometry_encoder, gpkg_to_esri
from .gpkg_connection import quote
from .schema import ATTACHMENT_COLUMNS, ATTACHMENT_FID

_MISSING = object()


def _convert(conv, value):
    return None if value is None else conv(value)


class FeatureCodec:
    """Converts one layer's features: Esri JSON <-> (columns, values) of its table."""

    def __init__(self, layer: LayerDef) -> None:
        self.layer = layer
        self.table = quote(layer.table_name)
        self.fid = layer.object_id_field
        self.gid = layer.global_id_field
        self.geom = layer.geometry_column
        self.field_names = [f.name for f in layer.fields]
        self._to_gpkg = [fv.to_gpkg_converter(f.esri_type) for f in layer.fields]
        self._fields_and_converters = list(zip(self.field_names, self._to_gpkg))
        self._to_esri = [
            (f.name, fv.to_esri_converter(f.esri_type)) for f in layer.uploadable_fields
        ]
        self._lower = {f.name.lower(): f.name for f in layer.fields}
        self._lower[layer.object_id_field.lower()] = layer.object_id_field
        self._by_name = {f.name: f for f in layer.fields}
        self._by_name[self.fid] = None  # the ObjectID arrives too; it is not a column we write
        #: All data columns in table order (geometry first), without the fid.
        self.columns = ([self.geom] if self.geom else []) + self.field_names
        self._all_fields = frozenset(self.field_names)
        self._present_all = tuple(self.field_names)
        self._present_all_geom = tuple(self.columns)
        self._encode_geometry: Callable[[dict | None], bytes | None] | None = None

    # -- from the service -------------------------------------------------------------------

    def _attributes(self, feature: dict) -> dict:
        attrs = feature.get("attributes") or {}
        # Field names are case-insensitive on ArcGIS; match them the same way when needed.
        if not self._by_name.keys() >= attrs.keys():
            attrs = {self._lower.get(k.lower(), k): v for k, v in attrs.items()}
        return attrs

    def global_id(self, feature: dict) -> str | None:
        attrs = self._attributes(feature)
        return fv.normalize_guid(attrs.get(self.gid))

    def geometry_blob(self, geometry: dict | None) -> bytes | None:
        if geometry is None:
            return None
        layer = self.layer
        try:
            if self._encode_geometry is None:
                self._encode_geometry = geometry_encoder(
                    layer.geometry_type,
                    layer.srs_id,
                    layer.has_z,
                    layer.has_m,
                    true_curves=layer.true_curves,
                )
            return self._encode_geometry(geometry)
        except UnsupportedGeometryError as exc:
            raise UnsupportedGeometryError(f"{layer.name}: {exc}") from None

    def full_row(self, feature: dict) -> tuple[Any, list]:
        """(server ObjectID or None, values for :attr:`columns`); absent fields are NULL."""
        attrs = self._attributes(feature)
        get = attrs.get
        values = [
            get(name) if conv is None else _convert(conv, get(name))
            for name, conv in self._fields_and_converters
        ]
        if self.geom:
            values.insert(0, self.geometry_blob(feature.get("geometry")))
        return get(self.fid), values

    def present_row(self, feature: dict) -> tuple[tuple[str, ...], list]:
        """Only the columns the feature carries (a partial update must not null the others)."""
        attrs = self._attributes(feature)
        if self._all_fields <= attrs.keys():  # the usual case: every field, in one pass
            values = [
                v if conv is None or v is None else conv(v)
                for name, conv in self._fields_and_converters
                for v in (attrs[name],)
            ]
            if self.geom and "geometry" in feature:
                values.insert(0, self.geometry_blob(feature.get("geometry")))
                return self._present_all_geom, values
            return self._present_all, values
        cols: list[str] = []
        values = []
        if self.geom and "geometry" in feature:
            cols.append(self.geom)
            values.append(self.geometry_blob(feature.get("geometry")))
        for name, conv in zip(self.field_names, self._to_gpkg):
            v = attrs.get(name, _MISSING)
            if v is _MISSING:
                continue
            cols.append(name)
            values.append(conv(v) if conv is not None and v is not None else v)
        return tuple(cols), values

    # -- to the service ---------------------------------------------------------------------

    def esri_geometry(self, blob: bytes | None) -> dict | None:
        layer = self.layer
        return gpkg_to_esri(blob, layer.geometry_type, layer.has_z, layer.has_m)

    def upload_attributes(self, row: dict, fields: list[str] | None = None) -> dict:
        """Attributes for an upload: GlobalID plus the uploadable fields (or only ``fields``)."""
        out = {self.gid: row.get(self.gid)}
        wanted = None if fields is None else {f.lower() for f in fields}
        for name, conv in self._to_esri:
            if wanted is not None and name.lower() not in wanted:
                continue
            v = row.get(name)
            out[name] = conv(v) if conv is not None and v is not None else v
        return out


class AttachmentCodec:
    """Converts attachments: Esri JSON <-> rows of a ``__ATTACH`` table."""

    columns = ATTACHMENT_COLUMNS

    def __init__(self, table: str) -> None:
        self.table_name = table
        self.table = quote(table)
        self.fid = ATTACHMENT_FID

    @staticmethod
    def global_id(item: dict) -> str | None:
        return fv.normalize_guid(item.get("globalId") or item.get("globalid"))

    def row(self, item: dict, fetch_attachment=None) -> list:
        """Values for :attr:`columns` from a createReplica/synchronizeReplica attachment."""
        data = item.get("data")
        if isinstance(data, str):
            data = base64.b64decode(data)
        elif data is None and item.get("url") and fetch_attachment is not None:
            data = fetch_attachment(item["url"])
        size = item.get("size")
        if size is None and data is not None:
            size = len(data)
        return [
            self.global_id(item),
            fv.normalize_guid(item.get("parentGlobalId") or item.get("parentGlobalid")),
            item.get("contentType"),
            item.get("name"),
            size,
            data,
        ]

    @staticmethod
    def to_esri(row: dict) -> dict:
        data = row.get("DATA")
        return {
            "globalId": row.get("GLOBALID"),
            "parentGlobalId": fv.normalize_guid(row.get("REL_GLOBALID")),
            "name": row.get("ATT_NAME"),
            "contentType": row.get("CONTENT_TYPE"),
            "data": base64.b64encode(bytes(data)).decode("ascii") if data is not None else None,
        }
