"""Scheduled update packages of ahead-of-time offline maps (spec §6): list, size, download,
apply.

A preplanned map area has one package item per feature service. Its item ``properties`` carry
the package's replica (``replicaID``, ``syncModel``, the generation(s) of its data) and
``lastPurgedGen``; the portal's refresh job adds item resources ``d_<gen>.json``, each the
changes that bring a copy to generation ``<gen>`` (a synchronizeReplica download result).

A geodatabase at generation G applies every ``d_<gen>`` with gen > G, oldest first, each in ONE
transaction through :meth:`Geodatabase.commit_sync` together with its generation. That makes a
series resumable: after a dropped connection or a crash the geodatabase is at the generation
of the last package it committed, and the next run starts after it, so no package is applied
twice. When G <= ``lastPurgedGen`` (the packages it needs were purged) or the package was
rebuilt on another replica, the geodatabase is replaced by a fresh download of the package
(the SDK's "reopen required" case); local edits that cannot be uploaded first make that a
refusal (:class:`UploadRequiredError`), never a loss.

Maps in the mode ``DownloadScheduledUpdatesAndUploadNewFeatures`` upload only new features:
:func:`~.tracking.install_adds_only_guards` makes the geodatabase refuse, at edit time, changes to and
deletions of the features that came from the service.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .commit import parse_gen, parse_layer_gens
from .enums import SyncDirection, SyncModel
from .errors import CancelledError, GeodatabaseError, OfflineMapSyncError, ServiceError
from .field_values import same_guid
from .geodatabase import Geodatabase
from .geodatabase_model import CommitReport
from .gpkg_connection import transaction
from .gpkg_files import move_geopackage, remove_geopackage
from .jobs import sub_progress
from .offline_map import GeodatabaseEntry, OfflineMap
from .replica_download import geodatabase_from_replica
from .rest import ArcGISClient, CancelCallback, ProgressCallback, ReplicaResultFile
from .tracking import has_adds_only_guards, install_adds_only_guards

log = logging.getLogger(__name__)


DELTA_NAME = re.compile(r"^d_(\d+)(?:\.json)?$", re.IGNORECASE)


class UploadRequiredError(OfflineMapSyncError):
    """The geodatabase must be replaced by a fresh package download, but it holds local edits
    that cannot be uploaded first. Nothing was changed."""


# -- what the portal says ----------------------------------------------------------------------
@dataclass(frozen=True)
class UpdatePackage:
    """One scheduled update package (item resource ``d_<generation>.json``)."""

    generation: int
    resource: str
    size: int


@dataclass(frozen=True)
class PackageInfo:
    """A package item of a preplanned map area: one feature service's data for the area.

    ``generation`` is the generation the package data is at; ``last_purged_gen`` None means
    no update package was ever purged.
    """

    item_id: str
    title: str
    service_url: str
    replica_id: str | None
    sync_model: SyncModel
    generation: int | None
    last_purged_gen: int | None
    size: int
    layer_ids: tuple[int, ...] = ()

    @classmethod
    def from_item(cls, item: dict) -> PackageInfo:
        props = item.get("properties") or {}
        gen = parse_gen(props.get("replicaServerGen"))
        if gen is None:
            layer_gens = parse_layer_gens(props.get("layerServerGens"))
            gen = min(layer_gens.values()) if layer_gens else None
        try:
            sync_model = SyncModel(props.get("syncModel") or SyncModel.PER_REPLICA.value)
        except ValueError:
            sync_model = SyncModel.PER_REPLICA
        return cls(
            item_id=str(item.get("id") or ""),
            title=str(item.get("title") or item.get("id") or ""),
            service_url=str(props.get("serviceUrl") or item.get("url") or "").rstrip("/"),
            replica_id=props.get("replicaID") or props.get("replicaId"),
            sync_model=sync_model,
            generation=gen,
            last_purged_gen=parse_gen(props.get("lastPurgedGen")),
            size=int(item.get("size") or 0),
            layer_ids=tuple(int(i) for i in props.get("layers") or ()),
        )


@dataclass(frozen=True)
class PackageUpdates:
    """What one geodatabase at ``local_generation`` needs from its package.

    ``updates``: the update packages to apply, oldest first (empty when a fresh download is
    needed). ``reopen_required``: the geodatabase must be replaced by the whole package
    (``reason`` says why: ``"purged"`` or ``"rebuilt"``). ``download_size`` is what a sync
    would download: the sum of the update packages' sizes, or the package size when the
    whole package is needed.
    """

    package: PackageInfo
    local_generation: int
    updates: tuple[UpdatePackage, ...] = ()
    reopen_required: bool = False
    reason: str | None = None

    @property
    def download_size(self) -> int:
        if self.reopen_required:
            return self.package.size
        return sum(update.size for update in self.updates)

    @property
    def available(self) -> bool:
        return self.reopen_required or bool(self.updates)


class ScheduledUpdateSource:
    """Reads package items and their update packages from a portal."""

    def __init__(self, client: ArcGISClient, portal_url: str) -> None:
        self.client = client
        self.portal_url = portal_url.rstrip("/")

    def _item_url(self, item_id: str) -> str:
        return f"{self.portal_url}/content/items/{item_id}"

    def package(self, item_id: str) -> PackageInfo:
        """The package item (raises ServiceError when it is gone)."""
        return PackageInfo.from_item(self.client.portal_item(self.portal_url, item_id))

    def update_packages(self, item_id: str) -> list[UpdatePackage]:
        """Every update package the portal holds for the package, oldest first."""
        found = []
        for resource in self.client.portal_item_resources(self.portal_url, item_id):
            name = str(resource.get("resource") or "")
            match = DELTA_NAME.match(name.rsplit("/", 1)[-1])
            if match:
                found.append(
                    UpdatePackage(int(match.group(1)), name, int(resource.get("size") or 0))
                )
        return sorted(found, key=lambda u: u.generation)

    def check(self, item_id: str, generation: int, replica_id: str | None = None) -> PackageUpdates:
        """What a copy at ``generation`` (of replica ``replica_id``) needs from the package."""
        package = self.package(item_id)
        if replica_id and package.replica_id and not same_guid(replica_id, package.replica_id):
            return PackageUpdates(package, generation, (), True, "rebuilt")
        if package.last_purged_gen is not None and generation <= package.last_purged_gen:
            return PackageUpdates(package, generation, (), True, "purged")
        updates = tuple(u for u in self.update_packages(item_id) if u.generation > generation)
        return PackageUpdates(package, generation, updates)

    def download_update(
        self, item_id: str, update: UpdatePackage, *, cancel: CancelCallback | None = None
    ) -> ReplicaResultFile:
        """Download one update package to a temporary file (the caller closes it)."""
        # Packages and update packages are result files (createReplica, synchronizeReplica).
        return self.client.fetch_result(
            f"{self._item_url(item_id)}/resources/{update.resource}", cancel=cancel
        )

    def download_package(
        self,
        item_id: str,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
    ) -> ReplicaResultFile:
        """Download the package data (a createReplica result) to a temporary file."""
        return self.client.fetch_result(
            f"{self._item_url(item_id)}/data", progress=progress, cancel=cancel
        )


# -- applying update packages --------------------------------------------------------------------
def _checked_header(package: ReplicaResultFile, update: UpdatePackage, gdb: Geodatabase) -> dict:
    """The package's header, complete, carrying the generation it brings (which must match its
    name) in the form the geodatabase stores: a package whose generation were not stored would
    be applied again by the next run."""
    header = dict(package.header())
    gen = parse_gen(header.get("replicaServerGen"))
    layer_gens = parse_layer_gens(header.get("layerServerGens"))
    if gen is None and layer_gens:
        gen = max(layer_gens.values())
    if gen is not None and gen != update.generation:
        raise ServiceError(
            f"The scheduled update {update.resource} is damaged: it holds generation {gen}, "
            f"not {update.generation}."
        )
    # Tolerate servers that only name the file, or give the other sync model's generations.
    header["replicaServerGen"] = update.generation
    if SyncModel(gdb.replica.sync_model) == SyncModel.PER_LAYER:
        header["layerServerGens"] = {layer.id: update.generation for layer in gdb.layers}
    return header


def apply_update_packages(
    gdb: Geodatabase,
    source: ScheduledUpdateSource,
    item_id: str,
    updates: tuple[UpdatePackage, ...] | list[UpdatePackage],
    *,
    keep_deltas_in: Path | None = None,
    on_applied: Callable[[int], None] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> list[tuple[int, CommitReport]]:
    """Apply ``updates`` in generation order, each in its own transaction with its generation.

    Packages at or below the geodatabase's generation are skipped (already applied by an
    earlier, interrupted run). ``on_applied(gen)`` runs after each commit. With
    ``keep_deltas_in`` each applied package is copied there as ``<gpkg stem>_d_<gen>.json``.
    The caller holds the geodatabase's sync lock. Returns ``(generation, report)`` pairs.
    """
    progress = progress or (lambda fraction, message: None)
    applied: list[tuple[int, CommitReport]] = []
    ordered = sorted(updates, key=lambda u: u.generation)
    for number, update in enumerate(ordered):
        if cancel is not None and cancel():
            raise CancelledError("The sync was cancelled; the updates applied so far are kept.")
        if update.generation <= gdb.replica.data_generation:
            continue
        progress(number / max(1, len(ordered)), f"Downloading scheduled update {update.generation}")
        with source.download_update(item_id, update, cancel=cancel) as package:
            header = _checked_header(package, update, gdb)
            if keep_deltas_in is not None:
                stem = Path(gdb.path).stem
                package.copy_to(Path(keep_deltas_in) / f"{stem}_d_{update.generation}.json")
            progress(
                (number + 0.5) / max(1, len(ordered)),
                f"Applying scheduled update {update.generation}",
            )
            _, events = package.read()  # closed with the package
            report = gdb.commit_sync(
                None,
                header,
                events,
                direction=SyncDirection.DOWNLOAD,
                kind="update_package",
                cancel=cancel,
            )
        applied.append((update.generation, report))
        progress(
            (number + 1) / max(1, len(ordered)), f"Applied scheduled update {update.generation}"
        )
        if on_applied is not None:
            on_applied(update.generation)
    return applied


# -- a geodatabase from a package ----------------------------------------------------------------
def geodatabase_from_package(
    source: ScheduledUpdateSource,
    package: PackageInfo,
    path: Path,
    *,
    service_info: dict,
    layer_infos: dict[int, dict],
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> Path:
    """Download the package data into a NEW GeoPackage at ``path`` (removed again on failure).

    ``service_info`` / ``layer_infos`` give the schema (the package data holds only rows).
    """
    path = Path(path)
    if path.exists():
        raise GeodatabaseError(f"{path} already exists; choose an empty location.")
    progress = progress or (lambda fraction, message: None)
    try:
        with source.download_package(
            package.item_id, progress=sub_progress(progress, 0.0, 0.4), cancel=cancel
        ) as data:
            header, events = data.read()  # closed with the data file
            geodatabase_from_replica(
                path,
                header,
                events,
                service_url=package.service_url,
                service_info=service_info,
                layer_infos=layer_infos,
                replica_name=str(header.get("replicaName") or package.title),
                sync_model=SyncModel(header.get("syncModel") or package.sync_model.value),
                progress=sub_progress(progress, 0.4, 1.0),
                cancel=cancel,
            )
    except BaseException:
        remove_geopackage(path)
        raise
    return path


def adopt_replica(gdb: Geodatabase, replica_id: str, replica_name: str) -> None:
    """Make the geodatabase hold ``replica_id`` instead of its package's replica, keeping its
    data and generation (a geodatabase registered for syncing with the service)."""
    # NOTE: writes the replica keys of the geodatabase's oms_meta directly; Geodatabase has no
    # public setter for them (one was dropped as unused).
    with transaction(gdb.conn):
        gdb.conn.executemany(
            "INSERT OR REPLACE INTO oms_meta (key, value) VALUES (?, ?)",
            (("replica_id", replica_id), ("replica_name", replica_name)),
        )


# -- one geodatabase of an ahead-of-time map ---------------------------------------------------------
@dataclass
class ScheduledUpdatesOutcome:
    """What :func:`update_geodatabase` did for one geodatabase."""

    applied: list[int] = field(default_factory=list)
    reports: list[CommitReport] = field(default_factory=list)
    #: The geodatabase was replaced by a fresh download of the package: reopen the map.
    replaced: bool = False
    #: The previous geodatabase, kept because it held conflicts (None when not kept).
    kept_previous: Path | None = None


def update_geodatabase(
    client: ArcGISClient,
    portal_url: str,
    offline_map: OfflineMap,
    entry: GeodatabaseEntry,
    *,
    keep_deltas_in: Path | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> ScheduledUpdatesOutcome:
    """Bring one geodatabase of an ahead-of-time map up to its package's latest generation.

    Applies the update packages it lacks, in order (resumable), recording each generation in
    the manifest; or, when they were purged or the package rebuilt, replaces the geodatabase
    by a fresh download (``replaced``). That replacement is refused with
    :class:`UploadRequiredError` while the geodatabase holds edits not yet uploaded (the caller
    uploads new features first). The geodatabase must not be open elsewhere in this process
    when it is replaced.
    """
    progress = progress or (lambda fraction, message: None)
    if not entry.package_item_id:
        raise OfflineMapSyncError(
            f"The geodatabase {entry.file} did not come from a map area package; it has no "
            "scheduled updates."
        )
    source = ScheduledUpdateSource(client, portal_url)
    outcome = ScheduledUpdatesOutcome()
    current = entry

    def note_generation(gen: int) -> None:
        nonlocal current
        # The geodatabase is the truth; the manifest follows it (a crash in between is healed
        # by the next run, which reads the generation from the geodatabase).
        if current.generation != gen:
            current = replace(current, generation=gen)
            offline_map.replace_geodatabase_entry(current)

    def record(gen: int) -> None:
        note_generation(gen)
        outcome.applied.append(gen)

    gdb = offline_map.open_geodatabase(entry)
    try:
        with gdb.sync_lock():
            uploads_new_only = offline_map.update_mode.uploads_only_new_features
            if uploads_new_only and not has_adds_only_guards(gdb.conn, gdb.layers):
                # Tools that rebuild a table (QGIS deleting a field) drop its triggers.
                install_adds_only_guards(gdb.conn, gdb.layers)
            progress(0.0, f"Looking for scheduled updates of {entry.title or entry.file}")
            needed = source.check(
                entry.package_item_id, gdb.replica.data_generation, gdb.replica.replica_id
            )
            if not needed.reopen_required:
                for _, report in apply_update_packages(
                    gdb,
                    source,
                    entry.package_item_id,
                    needed.updates,
                    keep_deltas_in=keep_deltas_in,
                    on_applied=record,
                    progress=progress,
                    cancel=cancel,
                ):
                    outcome.reports.append(report)
                note_generation(gdb.replica.data_generation)
                return outcome
            pending = gdb.has_pending_edits()
            if pending:
                counts = gdb.pending_counts()
                total = sum(sum(c.values()) for c in counts.values())
                raise UploadRequiredError(
                    f"Upload required: the scheduled updates that {entry.title or entry.file} "
                    f"needs are no longer on the portal, so it must be downloaded again, but it "
                    f"holds {total} local edit(s) that could not be uploaded first. Nothing was "
                    "changed; upload the edits (or take the area offline again) and sync again."
                )
            has_conflicts = bool(gdb.conflicts())
            service_info = gdb.service_info
            layer_infos = {layer.id: layer.layer_json for layer in gdb.layers}
            guarded = has_adds_only_guards(gdb.conn, gdb.layers)
            target = Path(gdb.path)
            fresh = target.with_name(f".{target.stem}.fresh.gpkg")
            remove_geopackage(fresh)
            progress(0.1, f"Downloading {entry.title or entry.file} again")
            geodatabase_from_package(
                source,
                needed.package,
                fresh,
                service_info=service_info,
                layer_infos=layer_infos,
                progress=sub_progress(progress, 0.1, 0.8),
                cancel=cancel,
            )
            try:
                with Geodatabase.open(fresh) as new_gdb:
                    if guarded or uploads_new_only:
                        install_adds_only_guards(new_gdb.conn, new_gdb.layers)
                    later = source.check(
                        entry.package_item_id,
                        new_gdb.replica.data_generation,
                        needed.package.replica_id,
                    )
                    for _, report in apply_update_packages(
                        new_gdb,
                        source,
                        entry.package_item_id,
                        later.updates,
                        progress=sub_progress(progress, 0.8, 0.95),
                        cancel=cancel,
                    ):
                        outcome.reports.append(report)
                    new_gen = new_gdb.replica.data_generation
            except BaseException:
                remove_geopackage(fresh)
                raise
            gdb.close()
            if has_conflicts:
                stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
                kept = target.with_name(f"{target.stem}.before-{stamp}.gpkg")
                shutil.copyfile(target, kept)
                outcome.kept_previous = kept
                progress(None, f"The previous copy, with its conflicts, was kept as {kept.name}")
            try:
                move_geopackage(fresh, target)
            except OSError as error:
                # Windows refuses to replace a file another program (QGIS) holds open.
                remove_geopackage(fresh)
                raise OfflineMapSyncError(
                    f"{entry.file} must be downloaded again but cannot be replaced "
                    f"({error.strerror or error}). Remove the map's layers from the project "
                    "and sync again; nothing was changed."
                ) from None
            note_generation(new_gen)
            outcome.replaced = True
            progress(1.0, f"{entry.title or entry.file} was downloaded again")
            return outcome
    finally:
        gdb.close()
