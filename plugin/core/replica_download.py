"""Replicas made into geodatabases: createReplica → a partial GeoPackage → moved into place,
and everything undone if the run fails.

Taking a map offline (one replica per service) and ``GeodatabaseSyncTask.generate_geodatabase``
(one replica) both go through :class:`ReplicaDownloads`, so they clean up alike: a failed or
cancelled run deletes the files it made and unregisters the replicas it created, looking a
replica up by its unique name when the answer carrying its ID never arrived.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .enums import SyncModel
from .errors import CancelledError, GeodatabaseError, ServiceError
from .geodatabase import Geodatabase
from .gpkg_files import move_geopackage, remove_geopackage
from .jobs import sub_progress
from .rest import (
    JOB_FAILED,
    ArcGISClient,
    BadAnswerError,
    CancelCallback,
    ProgressCallback,
    ReplicaResultFile,
)

log = logging.getLogger(__name__)


# Pauses between looks for a replica whose creation outcome is unknown (about 4 s in all).
_UNDO_WAITS = (0.2, 0.5, 1.0, 2.0)


def unique_replica_name(title: str) -> str:
    """A replica name made from ``title``, unique, so that a replica whose ID never arrived
    (cancelled mid-request, connection lost) can be found by name and unregistered."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", title).strip("_")[:40] or "offline_map"
    return f"{slug}_{uuid.uuid4().hex[:12]}"


def find_replica_id(client: ArcGISClient, service_url: str, replica_name: str) -> str | None:
    """The ID of the service's replica named ``replica_name`` (None when there is none)."""
    return next(
        (
            str(item["replicaID"])
            for item in client.replicas(service_url)
            if item.get("replicaName") == replica_name and item.get("replicaID")
        ),
        None,
    )


def partial_path(final: Path) -> Path:
    """Where the geodatabase meant for ``final`` is built (hidden, next to it)."""
    return final.with_name(f".{final.stem}.partial.gpkg")


def geodatabase_from_replica(
    path: Path,
    header: dict,
    events: Iterable[tuple[int, str, object]],
    *,
    service_url: str,
    service_info: dict,
    layer_infos: dict[int, dict],
    replica_name: str,
    sync_model: SyncModel,
    fetch_attachment: Callable[[str], bytes] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> str | None:
    """Store a replica's data (``header`` and ``events`` of an open result file or package) as
    a NEW geodatabase at ``path``; returns the replica ID it holds.

    ``service_info`` / ``layer_infos`` give the schema (the replica data holds only rows). The
    caller removes ``path`` on failure.
    """
    geodatabase = Geodatabase.create(
        path,
        service_url=service_url,
        service_info=service_info,
        layer_infos=layer_infos,
        replica_name=replica_name,
        sync_model=sync_model,
    )
    try:
        geodatabase.load_replica(
            header, events, fetch_attachment=fetch_attachment, progress=progress, cancel=cancel
        )
        return geodatabase.replica.replica_id
    finally:
        geodatabase.close()


@dataclass
class CreatedReplica:
    """A replica a run asked for; ``id`` is known once the service's answer arrived."""

    service_url: str
    name: str
    id: str | None = None
    status_url: str | None = None
    #: The service answered with an error: no replica exists.
    refused: bool = False


class ReplicaDownloads:
    """The replicas and files of one run; :meth:`undo` removes all of them.

    Every replica is noted before it is requested and every file before it is written, so a
    failure at any point can be undone.
    """

    def __init__(self, client: ArcGISClient, cancel: CancelCallback | None = None) -> None:
        self.client = client
        self.cancel: CancelCallback = cancel or (lambda: False)
        self.replicas: list[CreatedReplica] = []
        self.files: list[Path] = []

    # -- making ------------------------------------------------------------------------------
    def create_replica(
        self, service_url: str, request: dict, *, progress: ProgressCallback | None = None
    ) -> tuple[CreatedReplica, ReplicaResultFile]:
        """Ask the service for a replica (``request`` from ``rest.create_replica_request``);
        returns it with its result file (the caller closes the file)."""
        replica = CreatedReplica(service_url, str(request["replicaName"]))
        self.replicas.append(replica)
        try:
            result = self.client.create_replica(
                service_url,
                request,
                progress=progress,
                cancel=self.cancel,
                on_status_url=lambda url: setattr(replica, "status_url", url),
            )
        except ServiceError as error:
            # An ArcGIS error answer means no replica was made; a garbled answer means maybe.
            replica.refused = not isinstance(error, BadAnswerError)
            raise
        return replica, result

    def register(self, service_url: str, request: dict) -> str:
        """Create a replica whose data is not needed (the rows came another way); its ID.

        A request registering existing data (``replicaOptions``) must be answered with an info
        response: a service that ignores the option registers the replica at its current
        generation, and the data would miss the changes made since it was made.
        """
        replica, result = self.create_replica(service_url, request)
        with result:
            header = result.header()
            replica.id = header.get("replicaID")
        if not replica.id:
            raise ServiceError(f"The service {service_url} registered no replica.", url=service_url)
        existing = (request.get("replicaOptions") or {}).get("registerExistingData")
        if existing and header.get("responseType") != "esriReplicaResponseTypeInfo":
            raise ServiceError(
                f"The service {service_url} cannot register the map area's data for sync (it "
                "does not support registering existing data). Download the area with scheduled "
                "updates, or take the map offline on demand instead.",
                url=service_url,
            )
        return str(replica.id)

    def download_geodatabase(
        self,
        service_url: str,
        request: dict,
        final: Path,
        *,
        service_info: dict,
        layer_infos: dict[int, dict],
        title: str,
        progress: ProgressCallback,
    ) -> str | None:
        """Create a replica and store it as a new geodatabase at ``final``; its replica ID.

        The data goes into a partial file first and is moved into place complete.
        """
        partial = self.note_files(final)
        replica, result = self.create_replica(
            service_url, request, progress=sub_progress(progress, 0.0, 0.4)
        )
        with result:  # closes the reader too
            # The header fills in as the events are read: replicaID normally comes first, the
            # rest is complete by the time load_replica reaches the end of the file.
            header, events = result.read()
            replica.id = header.get("replicaID")
            self._check_cancelled()
            progress(0.4, f"Storing the data of {title}")
            stored_id = geodatabase_from_replica(
                partial,
                header,
                events,
                service_url=service_url,
                service_info=service_info,
                layer_infos=layer_infos,
                replica_name=replica.name,
                sync_model=SyncModel(request["syncModel"]),
                fetch_attachment=self._fetch_attachment,
                progress=sub_progress(progress, 0.4, 1.0),
                cancel=self.cancel,
            )
            replica.id = stored_id or header.get("replicaID") or replica.id
        self._check_cancelled()
        move_geopackage(partial, final)
        return replica.id

    def note_files(self, final: Path) -> Path:
        """Note ``final`` and its partial file for removal on failure; returns the partial."""
        partial = partial_path(final)
        self.files.extend([partial, final])
        return partial

    # -- undoing -----------------------------------------------------------------------------
    def undo(self) -> None:
        """Unregister every replica and delete every file of the run. Best effort and quiet:
        the error that brought us here is the one the user must see."""
        for replica in self.replicas:
            try:
                self._unregister(replica)
            except Exception as error:  # noqa: BLE001 (cleanup must not hide the first error)
                # The replica may stay registered on the service: say so in the log.
                log.warning(
                    "Could not unregister the replica %s of %s: %s",
                    replica.name,
                    replica.service_url,
                    error,
                )
        for path in self.files:
            remove_geopackage(path)

    def _unregister(self, replica: CreatedReplica) -> None:
        """Unregister a replica this run asked for, finding its ID if the answer never came."""
        client = self.client
        # When the outcome of createReplica is unknown (connection lost, cancelled while the
        # server job ran) the replica may appear a moment later: look again a few times.
        waits = () if replica.refused else _UNDO_WAITS
        for attempt in range(len(waits) + 1):
            if not replica.id and replica.status_url:
                status = client.get_json(replica.status_url)
                replica.id = status.get("replicaID")
                state = str(status.get("status") or "").replace(" ", "").lower()
                if not replica.id and state in JOB_FAILED:
                    return
            if not replica.id:
                replica.id = find_replica_id(client, replica.service_url, replica.name)
            if replica.id:
                client.unregister_replica(replica.service_url, replica.id)
                return
            if attempt < len(waits):
                time.sleep(waits[attempt])

    # -- helpers -----------------------------------------------------------------------------
    def _check_cancelled(self) -> None:
        if self.cancel():
            raise CancelledError("The operation was cancelled.")

    def _fetch_attachment(self, url: str) -> bytes:
        # Attachments normally come inline; this is for servers that answer with URLs anyway.
        handle, name = tempfile.mkstemp(prefix="oms-attachment-")
        os.close(handle)
        try:
            self.client.download(url, name, cancel=self.cancel)
            return Path(name).read_bytes()
        finally:
            os.unlink(name)


def check_writable_folder(final: Path) -> None:
    """Fail before any replica exists when a GeoPackage cannot be written at ``final``."""
    folder = final.parent
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise GeodatabaseError(f"The folder {folder} {what}; choose an existing folder.")
    probe = partial_path(final)
    try:
        with open(probe, "xb"):
            pass
        probe.unlink()
    except FileExistsError:
        pass  # a leftover of an earlier run: Geodatabase.create reports it
    except OSError as error:
        raise GeodatabaseError(
            f"Cannot write in the folder {folder}: {error.strerror or error}. Choose another "
            "folder."
        ) from None
