"""An offline map on disk: a folder holding ``offline_map.json`` and one GeoPackage per service.

The manifest says where the map came from (a web map item, a preplanned map area, or plain
service URLs), its area of interest, how it is kept current (update mode) and which
geodatabase belongs to which feature service, with the web map's layer titles, drawing order
and visibility. It never holds credentials: tokens are stripped from every URL written.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .enums import PreplannedUpdateMode
from .errors import GeodatabaseError, ManifestError
from .geodatabase_model import Conflict, unique_name
from .sites import Site

if TYPE_CHECKING:
    from .geodatabase import Geodatabase

MANIFEST_NAME = "offline_map.json"
FORMAT_VERSION = 1

# Query parameters that may carry credentials; they never reach the manifest.
_SECRET_PARAMS = {"token", "access_token", "password", "username", "key", "api_key", "apikey"}


#: Longest file stem of a file in the map folder, in UTF-8 bytes: file systems allow 255 per
#: name, and the names made from it add at most about 40 (".<stem>.partial.gpkg-wal",
#: "<stem>_deltas", "<stem>_<time>_download.json", "<stem>.before-<time>.gpkg-journal",
#: "<stem>.mbtiles.partial-journal", a "_2" for uniqueness).
MAX_FILE_STEM_BYTES = 150
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10)
}


def unique_file_stem(title: str, taken: set[str], default: str) -> str:
    """A file name stem for a file of the map folder made from a title (of a service, a
    basemap layer): no characters file systems refuse, not a reserved name, not too long,
    unique among ``taken`` (lower-case stems, updated)."""
    stem = re.sub(r'[<>:"/\\|?*\x00-\x1f]', "_", title).strip(" .") or default
    # A title can be any length; cut at a character boundary.
    stem = stem.encode("utf-8")[:MAX_FILE_STEM_BYTES].decode("utf-8", "ignore").strip(" .")
    if stem.upper() in _WINDOWS_RESERVED:
        stem += "_"
    return unique_name(stem, taken)


def strip_credentials(url: str) -> str:
    """``url`` without user info and without token-like query parameters."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in _SECRET_PARAMS
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))


@dataclass(frozen=True)
class OfflineMapUpdateCapabilities:
    """SDK ``OfflineMapUpdateCapabilities``: how this offline map can be brought up to date."""

    supports_sync_with_feature_services: bool
    supports_scheduled_updates_for_features: bool


@dataclass(frozen=True)
class MapSource:
    """Where an offline map came from.

    On-demand maps from a web map have ``portal_url`` + ``webmap_item_id``; maps taken from
    plain services have ``service_urls``; ahead-of-time maps also have ``map_area_item_id``.
    """

    portal_url: str | None = None
    webmap_item_id: str | None = None
    webmap_title: str | None = None
    map_area_item_id: str | None = None
    service_urls: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.portal_url:
            data["portal_url"] = strip_credentials(self.portal_url)
        if self.webmap_item_id:
            data["webmap_item_id"] = self.webmap_item_id
        if self.webmap_title:
            data["webmap_title"] = self.webmap_title
        if self.map_area_item_id:
            data["map_area_item_id"] = self.map_area_item_id
        if self.service_urls:
            data["service_urls"] = [strip_credentials(u) for u in self.service_urls]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MapSource:
        return cls(
            portal_url=data.get("portal_url"),
            webmap_item_id=data.get("webmap_item_id"),
            webmap_title=data.get("webmap_title"),
            map_area_item_id=data.get("map_area_item_id"),
            service_urls=tuple(data.get("service_urls") or ()),
        )


@dataclass(frozen=True)
class LayerEntry:
    """One layer or table of a geodatabase as the map shows it.

    ``draw_order`` counts from the bottom of the map (0 = drawn first), as the web map's
    ``operationalLayers`` do; tables have None. ``webmap_layer_id`` is the operational layer's
    id in the web map, when there is one.
    """

    id: int
    title: str
    is_table: bool = False
    visible: bool = True
    opacity: float = 1.0
    draw_order: int | None = None
    definition_expression: str | None = None
    webmap_layer_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "is_table": self.is_table,
            "visible": self.visible,
            "opacity": self.opacity,
        }
        if self.draw_order is not None:
            data["draw_order"] = self.draw_order
        if self.definition_expression:
            data["definition_expression"] = self.definition_expression
        if self.webmap_layer_id:
            data["webmap_layer_id"] = self.webmap_layer_id
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerEntry:
        return cls(
            id=int(data["id"]),
            title=str(data.get("title", "")),
            is_table=bool(data.get("is_table", False)),
            visible=bool(data.get("visible", True)),
            opacity=float(data.get("opacity", 1.0)),
            draw_order=None if data.get("draw_order") is None else int(data["draw_order"]),
            definition_expression=data.get("definition_expression"),
            webmap_layer_id=data.get("webmap_layer_id"),
        )


@dataclass(frozen=True)
class GeodatabaseEntry:
    """One geodatabase of an offline map: a GeoPackage holding one replica of one service.

    ``file`` is relative to the map folder; ``path`` is the absolute path, filled in when the
    map is opened. ``package_item_id`` and ``generation`` are set for ahead-of-time maps only:
    the package item the data came from and the generation the local copy is at (the
    geodatabase itself holds the authoritative generation; this copy is for people and tools
    reading the manifest). ``upload_replica_id``: for maps that upload new features, the
    upload-only replica registered for them (the package's own replica is shared by every
    copy of the area and never uploads).
    """

    file: str
    service_url: str
    title: str
    layers: tuple[LayerEntry, ...] = ()
    download_only: bool = False
    package_item_id: str | None = None
    generation: int | None = None
    upload_replica_id: str | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def layer_ids(self) -> list[int]:
        """Ids of the spatial layers, in service order."""
        return sorted(layer.id for layer in self.layers if not layer.is_table)

    @property
    def table_ids(self) -> list[int]:
        """Ids of the non-spatial tables, in service order."""
        return sorted(layer.id for layer in self.layers if layer.is_table)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "file": self.file,
            "service_url": strip_credentials(self.service_url),
            "title": self.title,
            "layers": [layer.to_dict() for layer in self.layers],
            "download_only": self.download_only,
        }
        if self.package_item_id:
            data["package_item_id"] = self.package_item_id
        if self.generation is not None:
            data["generation"] = self.generation
        if self.upload_replica_id:
            data["upload_replica_id"] = self.upload_replica_id
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeodatabaseEntry:
        return cls(
            file=str(data["file"]),
            service_url=str(data["service_url"]),
            title=str(data.get("title", "")),
            layers=tuple(LayerEntry.from_dict(item) for item in data.get("layers") or ()),
            download_only=bool(data.get("download_only", False)),
            package_item_id=data.get("package_item_id"),
            generation=None if data.get("generation") is None else int(data["generation"]),
            upload_replica_id=data.get("upload_replica_id"),
        )


#: Kinds of basemap entries: files downloaded into the map folder, and the others.
BASEMAP_DOWNLOADED_KINDS = ("raster", "vector")
BASEMAP_KINDS = (*BASEMAP_DOWNLOADED_KINDS, "online", "local")


@dataclass(frozen=True)
class BasemapEntry:
    """One basemap layer of an offline map, listed bottom to top in drawing order.

    ``kind``: ``raster`` (a GeoPackage tile set in the folder), ``vector`` (an MBTiles file in
    the folder, with its Mapbox GL ``style`` beside it), ``online`` (the layer stays on its
    service: ``source_url``/``style_url`` and the web map's ``layer_type``) or ``local`` (a file
    the user already had: ``path`` is absolute and the map never deletes it). Paths of
    downloaded kinds are relative to the map folder and stay inside it.
    """

    title: str
    kind: str
    path: str | None = None
    format: str | None = None
    style: str | None = None
    source_url: str | None = None
    layer_type: str | None = None
    style_url: str | None = None
    min_level: int | None = None
    max_level: int | None = None
    visible: bool = True
    opacity: float = 1.0

    @property
    def downloaded(self) -> bool:
        """True when the map folder holds this basemap's files (removed with the map)."""
        return self.kind in BASEMAP_DOWNLOADED_KINDS

    def files(self) -> list[str]:
        """The files of a downloaded basemap, relative to the map folder."""
        if not self.downloaded:
            return []
        return [name for name in (self.path, self.style) if name]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"title": self.title, "kind": self.kind}
        if self.downloaded:
            data.update(
                format=self.format,
                path=self.path,
                style=self.style,
                min_level=self.min_level,
                max_level=self.max_level,
            )
        elif self.kind == "local":
            data["path"] = self.path
        else:
            data["layer_type"] = self.layer_type
            if self.style_url:
                data["style_url"] = strip_credentials(self.style_url)
        if self.source_url:
            data["source_url"] = strip_credentials(self.source_url)
        data.update(visible=self.visible, opacity=self.opacity)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BasemapEntry:
        kind = str(data["kind"])
        if kind not in BASEMAP_KINDS:
            raise ValueError(f"the basemap kind {kind!r} is unknown")

        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        def level(key: str) -> int | None:
            value = data.get(key)
            return None if value is None else int(value)

        return cls(
            title=str(data.get("title") or ""),
            kind=kind,
            path=text("path"),
            format=text("format"),
            style=text("style"),
            source_url=text("source_url"),
            layer_type=text("layer_type"),
            style_url=text("style_url"),
            min_level=level("min_level"),
            max_level=level("max_level"),
            visible=bool(data.get("visible", True)),
            opacity=float(data.get("opacity", 1.0)),
        )


@dataclass(frozen=True)
class MapConflict:
    """One entry of an offline map's conflict log, with the geodatabase and the layer title
    (as the map names it) it belongs to."""

    entry: GeodatabaseEntry
    layer_title: str
    conflict: Conflict
    #: The feature's name for people (its layer's display field), "" when it has none.
    feature_name: str = ""


@dataclass(frozen=True)
class OfflineMapManifest:
    """The content of ``offline_map.json``.

    ``area_of_interest`` and ``initial_extent`` are Esri JSON geometries with their
    ``spatialReference``; ``created`` is an ISO 8601 UTC time.
    """

    title: str
    source: MapSource
    update_mode: PreplannedUpdateMode
    geodatabases: tuple[GeodatabaseEntry, ...]
    area_of_interest: dict[str, Any] | None = None
    initial_extent: dict[str, Any] | None = None
    #: The basemap layers, bottom to top (empty for maps without one, and for older maps).
    basemaps: tuple[BasemapEntry, ...] = ()
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format_version": self.format_version,
            "title": self.title,
            "created": self.created,
            "source": self.source.to_dict(),
            "area_of_interest": self.area_of_interest,
            "update_mode": self.update_mode.name,
            "initial_extent": self.initial_extent,
            "geodatabases": [entry.to_dict() for entry in self.geodatabases],
        }
        if self.basemaps:
            data["basemaps"] = [entry.to_dict() for entry in self.basemaps]
        return data

    @classmethod
    def from_dict(cls, data: Any, where: Path | str = MANIFEST_NAME) -> OfflineMapManifest:
        """Parse and validate a manifest; raises ManifestError naming ``where`` when it is bad."""
        if not isinstance(data, dict):
            raise ManifestError(
                f"The offline map manifest {where} is damaged: it is not a JSON object."
            )
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ManifestError(
                f"The offline map manifest {where} is damaged: it has no valid format_version."
            )
        if version > FORMAT_VERSION:
            raise ManifestError(
                f"The offline map in {Path(where).parent} was made by a newer version of Offline Map Sync "
                f"(format {version}; this version reads format {FORMAT_VERSION}). Update the plugin to open it."
            )
        try:
            mode = data.get("update_mode", PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES.name)
            update_mode = (
                PreplannedUpdateMode(mode) if isinstance(mode, int) else PreplannedUpdateMode[mode]
            )
            entries = tuple(
                GeodatabaseEntry.from_dict(item) for item in data.get("geodatabases") or ()
            )
            return cls(
                title=str(data.get("title") or ""),
                source=MapSource.from_dict(data.get("source") or {}),
                update_mode=update_mode,
                geodatabases=entries,
                area_of_interest=data.get("area_of_interest"),
                initial_extent=data.get("initial_extent"),
                basemaps=tuple(BasemapEntry.from_dict(item) for item in data.get("basemaps") or ()),
                created=str(data.get("created") or ""),
                format_version=version,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ManifestError(
                f"The offline map manifest {where} is damaged: {_describe(error)}."
            ) from None


class OfflineMap:
    """An offline map folder, opened and validated. Use :meth:`open`."""

    def __init__(self, folder: Path, manifest: OfflineMapManifest) -> None:
        self._folder = folder
        self._set_manifest(manifest)

    def _set_manifest(self, manifest: OfflineMapManifest) -> None:
        self._manifest = manifest
        self._entries = [
            replace(entry, path=self._folder / entry.file) for entry in manifest.geodatabases
        ]

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> OfflineMap:
        """Open the offline map in ``folder``.

        Raises ManifestError when the folder or its manifest is missing, unreadable or from a
        newer format, and GeodatabaseError when a geodatabase it lists is missing.
        """
        folder = Path(folder).absolute()
        if not folder.is_dir():
            raise ManifestError(f"The offline map folder {folder} does not exist.")
        manifest_path = folder / MANIFEST_NAME
        if manifest_path.is_symlink():
            raise ManifestError(
                f"The offline map manifest {manifest_path} is a link to another file, so the map "
                "is not opened: a link in a copied offline map could point at another map. "
                f"Replace the link with the {MANIFEST_NAME} file itself."
            )
        if not manifest_path.is_file():
            raise ManifestError(f"{folder} is not an offline map: it has no {MANIFEST_NAME}.")
        try:
            text = manifest_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ManifestError(
                f"The offline map manifest {manifest_path} cannot be read: {error}."
            ) from None
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ManifestError(
                f"The offline map manifest {manifest_path} is damaged: {error}."
            ) from None
        except RecursionError:
            raise ManifestError(
                f"The offline map manifest {manifest_path} is damaged: it is nested too deeply."
            ) from None
        manifest = OfflineMapManifest.from_dict(data, manifest_path)
        for basemap in manifest.basemaps:
            check_basemap_paths(basemap, manifest_path)
        for entry in manifest.geodatabases:
            _check_relative(entry.file, manifest_path)
            if not (folder / entry.file).is_file():
                raise GeodatabaseError(
                    f"The geodatabase {entry.file} of the offline map '{manifest.title}' is missing "
                    f"from {folder}."
                )
        return cls(folder, manifest)

    @staticmethod
    def write_manifest(folder: str | os.PathLike[str], manifest: OfflineMapManifest) -> Path:
        """Write ``offline_map.json`` into ``folder`` atomically (a reader sees the old or the new
        file, never a partial one) and return its path."""
        folder = Path(folder)
        for entry in manifest.geodatabases:
            _check_relative(entry.file, folder / MANIFEST_NAME)
        for basemap in manifest.basemaps:
            check_basemap_paths(basemap, folder / MANIFEST_NAME)
        text = json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False)
        target = folder / MANIFEST_NAME
        handle, temp_name = tempfile.mkstemp(prefix=".offline_map.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp_name, target)
        except BaseException:
            try:
                os.unlink(temp_name)
            except OSError:
                pass
            raise
        return target

    # -- what the manifest says ----------------------------------------------------------
    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def manifest(self) -> OfflineMapManifest:
        return self._manifest

    @property
    def title(self) -> str:
        return self._manifest.title

    @property
    def source(self) -> MapSource:
        return self._manifest.source

    @property
    def update_mode(self) -> PreplannedUpdateMode:
        return self._manifest.update_mode

    @property
    def area_of_interest(self) -> dict[str, Any] | None:
        return self._manifest.area_of_interest

    @property
    def initial_extent(self) -> dict[str, Any] | None:
        return self._manifest.initial_extent

    @property
    def basemaps(self) -> list[BasemapEntry]:
        """The basemap layers, bottom to top."""
        return list(self._manifest.basemaps)

    def basemap_path(self, entry: BasemapEntry) -> Path | None:
        """The absolute path of a basemap's file (None for online basemaps, and for a local
        file whose path is not absolute: it would be looked for wherever QGIS happens to run)."""
        if entry.path is None or entry.kind == "online":
            return None
        if entry.kind == "local":
            path = Path(entry.path)
            return path if path.is_absolute() else None
        return self._folder / entry.path

    @property
    def geodatabases(self) -> list[GeodatabaseEntry]:
        """The geodatabases, each with ``path`` set to the absolute file path."""
        return list(self._entries)

    def layers_in_draw_order(self) -> list[tuple[GeodatabaseEntry, LayerEntry]]:
        """Every spatial layer of the map, bottom first, then every table."""
        layers = [(entry, layer) for entry in self._entries for layer in entry.layers]
        spatial = sorted(
            (pair for pair in layers if not pair[1].is_table),
            key=lambda pair: -1 if pair[1].draw_order is None else pair[1].draw_order,
        )
        return spatial + [pair for pair in layers if pair[1].is_table]

    @property
    def update_capabilities(self) -> OfflineMapUpdateCapabilities:
        """Whether the map syncs with its feature services and/or takes scheduled updates."""
        mode = self.update_mode
        has_geodatabases = bool(self._entries)
        syncs = mode.syncs_with_feature_services
        scheduled = mode.takes_scheduled_updates
        return OfflineMapUpdateCapabilities(
            supports_sync_with_feature_services=has_geodatabases and syncs,
            supports_scheduled_updates_for_features=has_geodatabases
            and scheduled
            and all(entry.package_item_id for entry in self._entries),
        )

    # -- the geodatabases ----------------------------------------------------------------
    def open_geodatabase(self, entry: GeodatabaseEntry) -> Geodatabase:
        """Open one of this map's geodatabases (the caller closes it)."""
        from .geodatabase import Geodatabase

        path = self._folder / entry.file
        if not path.is_file():
            raise GeodatabaseError(
                f"The geodatabase {entry.file} of the offline map '{self.title}' is missing from {self._folder}."
            )
        geodatabase = Geodatabase.open(path)
        try:
            check_entry_matches(entry, geodatabase.replica.service_url)
        except BaseException:
            geodatabase.close()
            raise
        return geodatabase

    def conflicts(self) -> list[MapConflict]:
        """Every entry of the conflict logs of the map's geodatabases, geodatabase by
        geodatabase (oldest first within each)."""
        found = []
        for entry in self._entries:
            titles = {layer.id: layer.title for layer in entry.layers}
            with self.open_geodatabase(entry) as geodatabase:
                definitions = {layer.id: layer for layer in geodatabase.layers}
                for conflict in geodatabase.conflicts():
                    title = titles.get(conflict.layer_id, conflict.table_name)
                    definition = definitions.get(conflict.layer_id)
                    name = definition.feature_label(conflict.attributes or {}) if definition else ""
                    found.append(MapConflict(entry, title, conflict, name))
        return found

    def local_edit_counts(self) -> dict[str, dict[int, dict[str, int]]]:
        """Pending local edits not yet uploaded: per geodatabase file, per layer id, the counts
        of the geodatabase's ``pending_counts()`` (adds, updates, deletes, attachment changes)."""
        counts: dict[str, dict[int, dict[str, int]]] = {}
        for entry in self._entries:
            with self.open_geodatabase(entry) as geodatabase:
                counts[entry.file] = geodatabase.pending_counts()
        return counts

    def edits_to_upload(self, entry: GeodatabaseEntry, counts: dict[int, dict[str, int]]) -> bool:
        """Whether a geodatabase's pending ``counts`` (its ``pending_counts()``) hold edits a
        sync would upload: never for a download-only geodatabase or a map that does not upload,
        only new features for a map that uploads only those."""
        mode = self.update_mode
        if entry.download_only or not mode.syncs_with_feature_services:
            return False
        if mode.uploads_only_new_features:
            return any(c.get("adds", 0) > 0 for c in counts.values())
        return any(sum(c.values()) > 0 for c in counts.values())

    def has_local_edits(self) -> bool:
        """True when any geodatabase holds an edit that has not been uploaded yet."""
        for entry in self._entries:
            with self.open_geodatabase(entry) as geodatabase:
                if geodatabase.has_pending_edits():
                    return True
        return False

    def save(self, manifest: OfflineMapManifest) -> None:
        """Replace this map's manifest (atomically) and what this object reports, e.g. to record
        the generation an ahead-of-time geodatabase has reached."""
        OfflineMap.write_manifest(self._folder, manifest)
        self._set_manifest(manifest)

    def replace_geodatabase_entry(self, entry: GeodatabaseEntry) -> None:
        """Save the manifest with the entry of the same ``file`` replaced by ``entry``."""
        entries = tuple(
            replace(entry, path=None) if old.file == entry.file else old
            for old in self._manifest.geodatabases
        )
        if all(old.file != entry.file for old in self._manifest.geodatabases):
            raise ManifestError(f"The offline map '{self.title}' has no geodatabase {entry.file}.")
        self.save(replace(self._manifest, geodatabases=entries))

    def __repr__(self) -> str:
        return f"OfflineMap({str(self._folder)!r}, title={self.title!r})"


def check_entry_matches(entry: GeodatabaseEntry, recorded_service_url: str) -> None:
    """Raise ManifestError when the manifest names another service for a geodatabase than the
    one the geodatabase itself records (the manifest is easy to edit; a changed one could send
    the user's edits and credentials to another server)."""
    if recorded_service_url and _service_key(recorded_service_url) != _service_key(
        entry.service_url
    ):
        raise ManifestError(
            f"The offline map manifest names the service {strip_credentials(entry.service_url)} "
            f"for {entry.file}, but the geodatabase itself was made for "
            f"{strip_credentials(recorded_service_url)}. The manifest was changed after the map "
            "was made, so nothing was sent to either server. Take the map offline again, or "
            f"restore its original {MANIFEST_NAME}."
        )


def _service_key(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url.strip())
    site = Site.of(url)
    return (site.scheme, site.host, site.port, parts.path.rstrip("/").lower())


def _names_a_file_inside(name: str, *, directly: bool = False) -> bool:
    """Whether ``name``, a file name a manifest gives, names a file inside the map folder
    (``directly`` in it, not in a subfolder): relative, on no drive, never going up with
    ``..``. Both separators count, whatever the platform: a manifest is data from elsewhere,
    and could otherwise make QGIS open, or removal delete, any file."""
    parts = name.replace("\\", "/").split("/")
    if not name or not parts[0] or PureWindowsPath(name).drive or ".." in parts:
        return False
    return len(parts) == 1 or not directly


def _check_relative(file: str, manifest_path: Path) -> None:
    if not _names_a_file_inside(file, directly=True):
        raise ManifestError(
            f"The offline map manifest {manifest_path} is damaged: the geodatabase name {file!r} "
            "is not a file name inside the map folder."
        )


def check_basemap_paths(entry: BasemapEntry, manifest_path: Path) -> None:
    """Raise ManifestError when a downloaded basemap's files are not inside the map folder."""
    if not entry.downloaded:
        return
    if not entry.path:
        raise ManifestError(
            f"The offline map manifest {manifest_path} is damaged: the basemap "
            f"'{entry.title}' has no file."
        )
    for name in entry.files():
        if not _names_a_file_inside(name):
            raise ManifestError(
                f"The offline map manifest {manifest_path} is damaged: the basemap file "
                f"{name!r} is not inside the map folder."
            )


def resolves_inside(folder: Path, path: Path) -> bool:
    """True when ``path``, its links followed, lies inside ``folder`` (a link in a copied map
    folder may point anywhere)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError, ValueError):
        return False


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return f"the entry {error.args[0]!r} is missing"
    return str(error)
