"""The list of the provider's algorithms (one module per algorithm beside this one)."""

from __future__ import annotations


def all_algorithms() -> list:
    """Fresh instances of every algorithm the provider offers."""
    from .check_updates import CheckForUpdatesAlgorithm
    from .conflicts import ListConflictsAlgorithm, ResolveConflictAlgorithm
    from .generate_geodatabase import GenerateGeodatabaseAlgorithm
    from .preplanned import DownloadPreplannedMapAreaAlgorithm, ListPreplannedMapAreasAlgorithm
    from .remove import RemoveGeodatabaseAlgorithm, RemoveOfflineMapAlgorithm
    from .sync_geodatabase import SyncGeodatabaseAlgorithm
    from .synchronize import SynchronizeOfflineMapAlgorithm
    from .take_offline import TakeMapOfflineAlgorithm

    return [
        TakeMapOfflineAlgorithm(),
        ListPreplannedMapAreasAlgorithm(),
        DownloadPreplannedMapAreaAlgorithm(),
        SynchronizeOfflineMapAlgorithm(),
        CheckForUpdatesAlgorithm(),
        ListConflictsAlgorithm(),
        ResolveConflictAlgorithm(),
        GenerateGeodatabaseAlgorithm(),
        SyncGeodatabaseAlgorithm(),
        RemoveOfflineMapAlgorithm(),
        RemoveGeodatabaseAlgorithm(),
    ]
