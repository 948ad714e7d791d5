"""Remove an offline map or a single geodatabase: unregister its replicas, then delete its files.

The order protects the user's data and the services:

1. Take the sync lock of every geodatabase (a removal never races a sync) and look at each one:
   its replicas, pending local edits, conflict-log entries.
2. Refuse while local edits are pending unless the caller confirmed that they are discarded
   (:class:`PendingEditsError` names the counts per geodatabase and layer).
   Refuse, too, when another copy of the map may use the same replicas (a copied folder: the
   same replica ID in another known map, or a geodatabase made in another folder than the one
   it is in now): unregistering would break that copy's sync. The caller then removes the
   files only, or confirms that the replicas are unregistered anyway
   (:class:`SharedReplicaError` says which copy).
3. Check that every service is reachable before unregistering anything, so that a map is not
   left half-unregistered; then unregister. A replica the service no longer knows counts as
   unregistered. When a service cannot be reached (or refuses), nothing is deleted
   (:class:`UnregisterError`) unless the caller asked to remove the local copy anyway; the
   result then lists the replicas left registered on the service.
4. Delete the manifest first (the folder stops being an offline map at once), then the
   GeoPackages with their SQLite side files, the downloaded basemap files (never a local basemap
   file the map only refers to), the deltas folder, and the map folder itself when
   nothing but our files was in it.

Ahead-of-time maps that take scheduled updates share the package's replica with every other
copy of the map area; that replica belongs to the portal's refresh job and is never
unregistered here (only the upload-only replica a map registered for new features is).
"""

from __future__ import annotations

import glob
import logging
import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Union

from .basemap import BASEMAP_FOLDER
from .errors import (
    AuthenticationError,
    GeodatabaseError,
    NetworkError,
    OfflineMapSyncError,
    ServiceError,
)
from .field_values import guid_key, same_guid
from .gpkg_files import SIDECAR_SUFFIXES, SQLITE_SIDE_SUFFIXES
from .jobs import Job
from .offline_map import MANIFEST_NAME, OfflineMap, check_entry_matches, resolves_inside
from .rest import ArcGISClient, CredentialProvider, ProgressCallback

log = logging.getLogger(__name__)


class PendingEditsError(OfflineMapSyncError):
    """Local edits have not been uploaded; removing would discard them.

    ``counts``: geodatabase file name -> layer title -> number of pending edits.
    """

    def __init__(self, message: str, counts: dict[str, dict[str, int]]) -> None:
        super().__init__(message)
        self.counts = counts


class SharedReplicaError(OfflineMapSyncError):
    """Another copy of the map may use the same replicas; nothing was changed. ``copies``:
    one line per finding."""

    def __init__(self, message: str, copies: list[str]) -> None:
        super().__init__(message)
        self.copies = copies


class UnregisterError(OfflineMapSyncError):
    """A replica could not be unregistered (service unreachable or refusing); nothing local
    was deleted. ``failures`` lists ``(replica, reason)``."""

    def __init__(self, message: str, failures: list[tuple[ReplicaRef, str]]) -> None:
        super().__init__(message)
        self.failures = failures


@dataclass(frozen=True)
class RemovalParameters:
    """What the caller has confirmed.

    ``discard_pending_edits``: local edits not yet uploaded (and geodatabases too damaged to
    tell) may be deleted. ``files_only`` / ``unregister_shared_replicas``: see below; one of
    them is needed when the plan finds other copies using the replicas. ``remove_locally_if_unreachable``: delete the local files even when
    a replica cannot be unregistered because its service is unreachable or refuses; the
    replica then stays registered on the service (an administrator can remove it there).
    """

    discard_pending_edits: bool = False
    remove_locally_if_unreachable: bool = False
    #: Delete the local files only and unregister nothing (a copy of a map whose original, or
    #: another copy, still syncs with the same replicas).
    files_only: bool = False
    #: Unregister the replicas although another copy may use them (that copy stops syncing).
    unregister_shared_replicas: bool = False


@dataclass(frozen=True)
class ReplicaRef:
    """A replica registered on a service for one local geodatabase."""

    service_url: str
    replica_id: str
    geodatabase: str


@dataclass
class GeodatabaseRemovalInfo:
    """What removing one geodatabase involves (see :func:`plan_offline_map_removal`)."""

    path: Path
    title: str
    replicas: list[ReplicaRef] = field(default_factory=list)
    #: layer title -> pending local edits (rows and attachments), only layers with edits.
    pending: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    #: Set when the geodatabase cannot be read (damaged): its edits and replica are unknown.
    error: str | None = None
    #: Why another copy may use its replicas (one line each; empty when none was seen).
    copies: list[str] = field(default_factory=list)
    #: The scheduled-update package's replica, shared with every copy of the map area: never
    #: unregistered here.
    shared_replicas: list[ReplicaRef] = field(default_factory=list)

    @property
    def pending_total(self) -> int:
        return sum(self.pending.values())


@dataclass
class RemovalPlan:
    """The geodatabases to remove, their replicas and what would be lost; for a confirmation
    dialog. ``folder`` is the map folder (None for a single geodatabase)."""

    title: str
    folder: Path | None
    geodatabases: list[GeodatabaseRemovalInfo] = field(default_factory=list)

    @property
    def pending_total(self) -> int:
        return sum(g.pending_total for g in self.geodatabases)

    @property
    def conflicts_total(self) -> int:
        return sum(g.conflicts for g in self.geodatabases)

    @property
    def unreadable(self) -> list[GeodatabaseRemovalInfo]:
        return [g for g in self.geodatabases if g.error]

    @property
    def replicas(self) -> list[ReplicaRef]:
        return [r for g in self.geodatabases for r in g.replicas]

    @property
    def shared_replicas(self) -> list[ReplicaRef]:
        """Package replicas shared with other copies of the map area, left registered."""
        return [r for g in self.geodatabases for r in g.shared_replicas]

    @property
    def copies(self) -> list[str]:
        """Why another copy of the map may use its replicas (see :class:`SharedReplicaError`)."""
        return [line for g in self.geodatabases for line in g.copies]

    @property
    def needs_discard_confirmation(self) -> bool:
        return self.pending_total > 0 or bool(self.unreadable)

    def describe_pending(self) -> str:
        """E.g. ``"Demo.gpkg: 2 in Points, 1 in Inspections"`` (one line per geodatabase)."""
        lines = []
        for gdb in self.geodatabases:
            if gdb.pending:
                parts = ", ".join(f"{n} in {title}" for title, n in gdb.pending.items())
                lines.append(f"{gdb.path.name}: {parts}")
            elif gdb.error:
                lines.append(f"{gdb.path.name}: cannot be read ({gdb.error})")
        return "\n".join(lines)


@dataclass
class RemovalResult:
    """What a removal did."""

    title: str
    unregistered: list[ReplicaRef] = field(default_factory=list)
    #: Replicas still registered on their service, with the reason.
    left_registered: list[tuple[ReplicaRef, str]] = field(default_factory=list)
    #: Replicas of scheduled-update packages, shared with other copies: left alone on purpose.
    shared_replicas_kept: list[ReplicaRef] = field(default_factory=list)
    discarded_edits: int = 0
    discarded_conflicts: int = 0
    removed: list[Path] = field(default_factory=list)
    #: Files the removal did not create (left in the map folder, which is then kept).
    kept: list[Path] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        out = [
            f"The replica of {r.geodatabase} is still registered on "
            f"{r.service_url or 'its service'}: {reason}"
            for r, reason in self.left_registered
        ]
        if self.discarded_edits:
            out.append(
                f"{self.discarded_edits} local edits that were never uploaded were discarded."
            )
        if self.kept:
            out.append(
                "These files were not made by Offline Map Sync and were kept: "
                + ", ".join(p.name for p in self.kept)
            )
        return out


# ---------------------------------------------------------------------------------------------
# Planning


def _pending_by_title(gdb: Any, titles: dict[int, str]) -> dict[str, int]:
    pending = {}
    all_counts = gdb.pending_counts()
    for layer in gdb.layers:
        counts = all_counts.get(layer.id) or {}
        total = sum(int(v or 0) for v in counts.values())
        if total:
            pending[titles.get(layer.id) or layer.name] = total
    return pending


def _inspect(
    path: Path,
    title: str,
    titles: dict[int, str],
    replica_rule: Callable[[Any], tuple[list[ReplicaRef], list[ReplicaRef]]],
    elsewhere: dict[str, list[Path]] | None = None,
) -> GeodatabaseRemovalInfo:
    """What removing one geodatabase involves; ``replica_rule(gdb)`` gives its replicas to
    unregister and those shared with other copies (kept)."""
    from .geodatabase import Geodatabase

    info = GeodatabaseRemovalInfo(path=path, title=title)
    try:
        with Geodatabase.open(path) as gdb:
            info.replicas, info.shared_replicas = replica_rule(gdb)
            info.pending = _pending_by_title(gdb, titles)
            info.conflicts = len(gdb.conflicts())
            info.copies = _copies(path, gdb.made_in, info.replicas, elsewhere or {})
    except OfflineMapSyncError as error:
        info.error = str(error)
    except Exception as error:  # a damaged file can fail in many ways; the user must know which
        info.error = f"{type(error).__name__}: {error}"
    return info


def _keys(replica_ids: Iterable[Any]) -> set[str]:
    """The replica IDs as compared (:func:`~.field_values.guid_key`), missing ones left out."""
    return {key for key in map(guid_key, replica_ids) if key is not None}


def _replica_ids(path: Path) -> set[str]:
    """The replica IDs a geodatabase holds (read only; empty when it cannot be read)."""
    from .gpkg_connection import connect

    try:
        conn = connect(str(path), read_only=True)
    except Exception:  # another map's damaged file must not stop this removal
        return set()
    try:
        rows = conn.execute("SELECT value FROM oms_meta WHERE key = 'replica_id'").fetchall()
    except Exception:
        rows = []
    finally:
        conn.close()
    return _keys(value for (value,) in rows)


def _replicas_elsewhere(folders: Iterable[Path | str], own: Path) -> dict[str, list[Path]]:
    """Replica ID -> the geodatabases of the other offline maps in ``folders`` that hold it."""
    found: dict[str, list[Path]] = {}
    seen = {own.resolve()}
    for folder in folders:
        folder = Path(folder)
        try:
            if folder.resolve() in seen or not (folder / MANIFEST_NAME).is_file():
                continue
            seen.add(folder.resolve())
            other = OfflineMap.open(folder)
        except (OSError, OfflineMapSyncError):
            continue
        for entry in other.geodatabases:
            if entry.path is None or not entry.path.is_file():
                continue
            ids = _replica_ids(entry.path) | _keys([entry.upload_replica_id])
            for replica_id in ids:
                found.setdefault(replica_id, []).append(entry.path)
    return found


def _copies(
    path: Path,
    made_in: Path | None,
    replicas: list[ReplicaRef],
    elsewhere: dict[str, list[Path]],
) -> list[str]:
    """Why another copy may use the replicas of the geodatabase at ``path``."""
    if not replicas:
        return []
    lines = []
    ids = _keys(r.replica_id for r in replicas)
    others = sorted({p for i in ids for p in elsewhere.get(i, [])})
    for other in others:
        lines.append(
            f"{path.name} shares its replica with {other.name} of the offline map in "
            f"{other.parent}: it is a copy of the same map."
        )
    if made_in is not None and not others:
        try:
            moved = made_in.resolve() != path.parent.resolve()
        except OSError:
            moved = True
        if moved:
            original = made_in / path.name
            if original.is_file() and ids & _replica_ids(original):
                lines.append(
                    f"{path.name} is a copy of {original}, which still uses the same replica."
                )
            else:
                lines.append(
                    f"{path.name} was made in {made_in} and has been copied or moved since: a "
                    "copy elsewhere may still use the same replica."
                )
    return lines


def _map_plan(offline_map: OfflineMap, known_maps: Iterable[Path | str] = ()) -> RemovalPlan:
    plan = RemovalPlan(title=offline_map.title, folder=offline_map.folder)
    elsewhere = _replicas_elsewhere(known_maps, offline_map.folder)
    shares_package_replica = not offline_map.update_mode.downloads_from_feature_services
    for entry in offline_map.geodatabases:

        def replicas_of(gdb: Any, entry=entry) -> tuple[list[ReplicaRef], list[ReplicaRef]]:
            check_entry_matches(entry, gdb.replica.service_url)
            refs, shared = [], []
            own = gdb.replica.replica_id
            if own:
                package = ReplicaRef(entry.service_url, str(own), entry.file)
                if entry.package_item_id and shares_package_replica:
                    shared.append(package)
                else:
                    refs.append(package)
            if entry.upload_replica_id:
                refs.append(ReplicaRef(entry.service_url, entry.upload_replica_id, entry.file))
            return refs, shared

        titles = {layer.id: layer.title for layer in entry.layers}
        assert entry.path is not None
        plan.geodatabases.append(
            _inspect(entry.path, entry.title or entry.file, titles, replicas_of, elsewhere)
        )
    return plan


def plan_offline_map_removal(
    offline_map: Union[OfflineMap, str, Path], known_maps: Iterable[Path | str] = ()
) -> RemovalPlan:
    """What removing the map involves: replicas to unregister, pending edits that would be
    discarded, conflict-log entries, damaged geodatabases, other copies using the same
    replicas (among ``known_maps``, the folders of other maps the caller knows, and the folder
    each geodatabase was made in). Reads only; for a confirmation."""
    if not isinstance(offline_map, OfflineMap):
        offline_map = OfflineMap.open(offline_map)
    return _map_plan(offline_map, known_maps)


def _single_plan(path: Path) -> RemovalPlan:
    def replicas_of(gdb: Any) -> tuple[list[ReplicaRef], list[ReplicaRef]]:
        replica = gdb.replica
        if not replica.replica_id:
            return [], []
        return [ReplicaRef(replica.service_url, str(replica.replica_id), path.name)], []

    plan = RemovalPlan(title=path.name, folder=None)
    plan.geodatabases.append(_inspect(path, path.name, {}, replicas_of))
    return plan


def plan_geodatabase_removal(path: str | Path) -> RemovalPlan:
    """Like :func:`plan_offline_map_removal`, for one geodatabase made by
    ``GeodatabaseSyncTask.generate_geodatabase`` (not part of an offline map)."""
    path = _check_single(Path(path))
    return _single_plan(path)


def _check_single(path: Path) -> Path:
    path = path.absolute()
    if not path.is_file():
        raise GeodatabaseError(f"The geodatabase {path} does not exist.")
    manifest = path.parent / MANIFEST_NAME
    if manifest.is_file():
        try:
            offline_map = OfflineMap.open(path.parent)
        except OfflineMapSyncError:
            offline_map = None
        if offline_map is not None and any(
            e.path is not None and e.path.resolve() == path.resolve()
            for e in offline_map.geodatabases
        ):
            raise GeodatabaseError(
                f"{path.name} belongs to the offline map '{offline_map.title}' in {path.parent}. "
                "Remove the whole offline map instead."
            )
    return path


# ---------------------------------------------------------------------------------------------
# The removal


class _Removal:
    def __init__(
        self,
        client: ArcGISClient,
        params: RemovalParameters,
        progress: ProgressCallback,
        check_cancelled: Callable[[], None],
    ) -> None:
        self.client = client
        self.params = params
        self.progress = progress
        self.check_cancelled = check_cancelled

    def run(
        self,
        make_plan: Callable[[], RemovalPlan],
        paths: list[Path],
        extra_files: list[Path],
        deltas_folders: list[Path],
    ) -> RemovalResult:
        from .sync_lock import sync_lock

        with ExitStack() as locks:
            for path in paths:
                if path.is_file():
                    locks.enter_context(sync_lock(str(path)))
            plan = make_plan()
            self._check_pending(plan)
            self._check_copies(plan)
            self.check_cancelled()
            result = RemovalResult(title=plan.title, shared_replicas_kept=plan.shared_replicas)
            # No cancelling from here on: a half-unregistered map could no longer sync.
            if self.params.files_only:
                result.left_registered.extend(
                    (r, "only the files were removed, as asked") for r in plan.replicas
                )
            else:
                self._unregister(plan, result)
            result.discarded_edits = plan.pending_total
            result.discarded_conflicts = plan.conflicts_total
            self.progress(0.7, "Deleting the local files")
            # The manifest goes first: from then on the folder is no longer an offline map.
            for file in extra_files:
                self._delete(file, result)
            for path in paths:
                self._delete(path, result)
                for suffix in SQLITE_SIDE_SUFFIXES:
                    self._delete(Path(str(path) + suffix), result, quiet=True)
        # The lock files are released now (Windows cannot delete an open file).
        for path in paths:
            self._delete(Path(str(path) + ".synclock"), result, quiet=True)
        for folder in deltas_folders:
            if folder.is_dir():
                try:
                    shutil.rmtree(folder)
                    result.removed.append(folder)
                except OSError as error:
                    raise OfflineMapSyncError(
                        f"The deltas folder {folder} could not be deleted ({error.strerror or error}); "
                        "delete it by hand."
                    ) from None
        return result

    def _check_pending(self, plan: RemovalPlan) -> None:
        if not plan.needs_discard_confirmation or self.params.discard_pending_edits:
            return
        counts = {g.path.name: dict(g.pending) for g in plan.geodatabases if g.pending}
        if plan.pending_total:
            message = (
                f"'{plan.title}' has {plan.pending_total} local edits that were never uploaded "
                f"({plan.describe_pending()}). Synchronize first, or confirm that these edits "
                "will be discarded."
            )
        else:
            message = (
                f"'{plan.title}' cannot be checked for local edits: {plan.describe_pending()}. "
                "Confirm that whatever it holds will be discarded to remove it."
            )
        raise PendingEditsError(message, counts)

    def _check_copies(self, plan: RemovalPlan) -> None:
        params = self.params
        copies = plan.copies
        if not copies or params.files_only or params.unregister_shared_replicas:
            return
        raise SharedReplicaError(
            f"'{plan.title}' may be a copy: {' '.join(copies)} Unregistering its replicas would "
            'stop the other copy from syncing ("Replica ... does not exist"). Remove the '
            "files only, or confirm that the replicas are unregistered anyway.",
            copies,
        )

    def _unregister(self, plan: RemovalPlan, result: RemovalResult) -> None:
        params = self.params
        unreadable = plan.unreadable
        if unreadable:
            for gdb in unreadable:
                result.left_registered.append(
                    (
                        ReplicaRef("", "", gdb.path.name),
                        "the geodatabase cannot be read, so its replica is unknown",
                    )
                )
        replicas = plan.replicas
        if not replicas:
            return
        failures: list[tuple[ReplicaRef, str]] = []
        # Reach every service before unregistering anything: all or nothing, where possible.
        reachable: dict[str, str | None] = {}
        for url in dict.fromkeys(r.service_url for r in replicas):
            self.progress(0.1, f"Connecting to {url}")
            try:
                self.client.service_info(url)
                reachable[url] = None
            except (NetworkError, ServiceError) as error:
                reachable[url] = _reason(error)
        failures = [(r, reachable[r.service_url]) for r in replicas if reachable[r.service_url]]
        if failures and not params.remove_locally_if_unreachable:
            raise UnregisterError(_unregister_message(plan.title, failures, done=[]), failures)
        for number, replica in enumerate(replicas):
            if reachable[replica.service_url]:
                continue
            self.progress(
                0.2 + 0.5 * number / len(replicas),
                f"Unregistering the replica of {replica.geodatabase}",
            )
            reason = self._unregister_one(replica)
            if reason is None:
                result.unregistered.append(replica)
                continue
            failures.append((replica, reason))
            if not params.remove_locally_if_unreachable:
                raise UnregisterError(
                    _unregister_message(plan.title, failures, done=result.unregistered), failures
                )
        result.left_registered.extend(failures)

    def _unregister_one(self, replica: ReplicaRef) -> str | None:
        """None when the service no longer has the replica; else why it still has it."""
        try:
            self.client.unregister_replica(replica.service_url, replica.replica_id)
            return None
        except AuthenticationError as error:
            return _reason(error)
        except (NetworkError, ServiceError) as error:
            failure = error
        # A refusal may just mean "no such replica" (unregistered before): ask the list.
        try:
            listed = self.client.replicas(replica.service_url)
        except (NetworkError, ServiceError):
            return _reason(failure)
        if not any(same_guid(replica.replica_id, r.get("replicaID")) for r in listed):
            return None
        return _reason(failure)

    @staticmethod
    def _delete(path: Path, result: RemovalResult, *, quiet: bool = False) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as error:
            raise OfflineMapSyncError(
                f"{path} could not be deleted ({error.strerror or error}). Close it in QGIS and "
                "other programs, then remove it again."
            ) from None
        if not quiet:
            result.removed.append(path)


def _reason(error: BaseException) -> str:
    if isinstance(error, NetworkError):
        return f"the service cannot be reached ({error})"
    return str(error)


def _unregister_message(
    title: str, failures: list[tuple[ReplicaRef, str]], done: list[ReplicaRef]
) -> str:
    details = "; ".join(f"{r.geodatabase}: {reason}" for r, reason in failures)
    message = f"'{title}' was not removed: its replicas could not be unregistered ({details})."
    if done:
        message += (
            f" {len(done)} other replicas were unregistered already; those geodatabases can "
            "no longer sync."
        )
    return (
        message + " Try again when the service can be reached, or choose to remove the local "
        "copy anyway (the replica then stays registered on the service)."
    )


def _our_files_in(folder: Path, geodatabase_files: list[Path]) -> set[Path]:
    ours = {folder / MANIFEST_NAME}
    for path in geodatabase_files:
        ours.add(path)
        ours.update(Path(str(path) + s) for s in SIDECAR_SUFFIXES)
    ours.update(folder.glob(".offline_map.*.tmp"))
    return ours


def _basemap_files(offline_map: OfflineMap) -> list[Path]:
    """The files of the map's downloaded basemaps (with their partial and SQLite side files),
    only those really inside the map folder; a local basemap file is the user's and stays."""
    folder = offline_map.folder
    found: list[Path] = []
    for entry in offline_map.basemaps:
        for name in entry.files():
            path = folder / name
            # The file itself may be a link: removing it removes the link, not its target.
            if not resolves_inside(folder, path.parent):
                log.warning("The basemap file %s is outside the map folder; it is kept.", path)
                continue
            found.append(path)
            if name == entry.path:
                found += [Path(f"{path}{suffix}") for suffix in (*SQLITE_SIDE_SUFFIXES, ".partial")]
                # GDAL's statistics sidecars, written when QGIS draws the tiles (e.g.
                # "x.gpkg.aux.xml", "x.gpkg - zoom_level=13.aux.xml").
                found += sorted(path.parent.glob(f"{glob.escape(path.name)}*.aux.xml"))
    return found


class RemoveOfflineMapJob(Job):
    """Removes an offline map (see the module docstring); result: :class:`RemovalResult`.

    Raises :class:`PendingEditsError` (nothing changed) when local edits would be discarded
    without ``discard_pending_edits``, :class:`SharedReplicaError` (nothing changed) when
    another copy may use the replicas (see ``known_maps`` of :func:`plan_offline_map_removal`)
    without ``files_only`` or ``unregister_shared_replicas``, :class:`UnregisterError` (nothing deleted) when a
    replica cannot be unregistered without ``remove_locally_if_unreachable``, and
    ``SyncInProgressError`` while a geodatabase is synchronizing.
    """

    def __init__(
        self,
        offline_map: Union[OfflineMap, str, Path],
        params: RemovalParameters | None = None,
        credentials: CredentialProvider | None = None,
        *,
        client: ArcGISClient | None = None,
        known_maps: Iterable[Path | str] = (),
    ) -> None:
        super().__init__()
        self.offline_map = offline_map
        self.parameters = params or RemovalParameters()
        self.client = client or ArcGISClient(credentials)
        self.known_maps = list(known_maps)

    def _execute(self) -> RemovalResult:
        offline_map = self.offline_map
        if not isinstance(offline_map, OfflineMap):
            offline_map = OfflineMap.open(offline_map)
        folder = offline_map.folder
        self._report(0.0, f"Removing '{offline_map.title}'")
        paths = [e.path for e in offline_map.geodatabases if e.path is not None]
        basemap_files = _basemap_files(offline_map)
        ours = _our_files_in(folder, paths) | set(basemap_files)
        removal = _Removal(self.client, self.parameters, self._report, self._check_cancelled)
        result = removal.run(
            lambda: _map_plan(offline_map, self.known_maps),
            paths,
            [folder / MANIFEST_NAME, *basemap_files],
            [folder.with_name(folder.name + "_deltas")]
            + [p.with_name(p.stem + "_deltas") for p in paths],
        )
        basemap_folder = folder / BASEMAP_FOLDER
        if basemap_files and basemap_folder.is_dir() and not basemap_folder.is_symlink():
            try:
                basemap_folder.rmdir()
                ours.add(basemap_folder)
            except OSError:
                pass  # it holds files that are not the map's: listed as kept
        result.kept = (
            sorted(p for p in folder.iterdir() if p not in ours) if folder.is_dir() else []
        )
        if folder.is_dir() and not result.kept:
            try:
                folder.rmdir()
                result.removed.append(folder)
            except OSError as error:
                log.warning("The empty folder %s was kept: %s", folder, error)
        self._report(1.0, f"Removed '{offline_map.title}'")
        return result


class RemoveGeodatabaseJob(Job):
    """Removes one geodatabase made by ``GeodatabaseSyncTask.generate_geodatabase`` with the
    same rules as :class:`RemoveOfflineMapJob`; refuses a geodatabase of an offline map."""

    def __init__(
        self,
        path: str | Path,
        params: RemovalParameters | None = None,
        credentials: CredentialProvider | None = None,
        *,
        client: ArcGISClient | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.parameters = params or RemovalParameters()
        self.client = client or ArcGISClient(credentials)

    def _execute(self) -> RemovalResult:
        path = _check_single(self.path)
        self._report(0.0, f"Removing {path.name}")
        removal = _Removal(self.client, self.parameters, self._report, self._check_cancelled)
        result = removal.run(
            lambda: _single_plan(path), [path], [], [path.with_name(path.stem + "_deltas")]
        )
        self._report(1.0, f"Removed {path.name}")
        return result


def remove_offline_map(
    offline_map: Union[OfflineMap, str, Path],
    params: RemovalParameters | None = None,
    credentials: CredentialProvider | None = None,
    *,
    client: ArcGISClient | None = None,
    known_maps: Iterable[Path | str] = (),
) -> RemovalResult:
    """Remove an offline map, blocking (see :class:`RemoveOfflineMapJob`)."""
    return RemoveOfflineMapJob(
        offline_map, params, credentials, client=client, known_maps=known_maps
    ).run()


def remove_geodatabase(
    path: str | Path,
    params: RemovalParameters | None = None,
    credentials: CredentialProvider | None = None,
    *,
    client: ArcGISClient | None = None,
) -> RemovalResult:
    """Remove one stand-alone geodatabase, blocking (see :class:`RemoveGeodatabaseJob`)."""
    return RemoveGeodatabaseJob(path, params, credentials, client=client).run()


__all__ = [
    "GeodatabaseRemovalInfo",
    "PendingEditsError",
    "RemovalParameters",
    "RemovalPlan",
    "RemovalResult",
    "RemoveGeodatabaseJob",
    "SharedReplicaError",
    "RemoveOfflineMapJob",
    "ReplicaRef",
    "UnregisterError",
    "plan_geodatabase_removal",
    "plan_offline_map_removal",
    "remove_geodatabase",
    "remove_offline_map",
]
