"""The QGIS-free core of Offline Map Sync.

Nothing in this package imports ``qgis``: it runs in QGIS, in ``qgis_process``, in a plain
Python interpreter and in the tests alike. It may use the standard library, ``requests`` and
GDAL's ``osgeo`` (both ship with every QGIS).

Where each rule lives (look here before writing one again):

The service and the wire
  ``rest``               HTTP: tokens, createReplica/synchronizeReplica requests, job polling,
                         result files, portal items.
  ``service``            what a service can do, from its JSON: sync allowed (``Sync`` and
                         ``syncEnabled``), accepts edits (Create/Update/Delete/``Editing``),
                         per-layer/per-replica sync, async, rollback; schema changes that make a
                         sync unsafe.
  ``jsonstream``         streaming reader of result files.
  ``geometry``           Esri JSON geometry <-> GeoPackage geometry blobs.

One geodatabase (one GeoPackage = one replica)
  ``geodatabase``        the Geodatabase API; ``geodatabase_model`` its data classes
                         (``ReplicaInfo.data_generation``: the generation the data is at).
  ``schema``, ``field_values``, ``row_codec``, ``bulk_insert``   tables, values, rows.
  ``tracking``           change-tracking triggers, pending-change bookkeeping, and the guards of
                         maps that upload only new features.
  ``upload``             pending changes -> upload ``edits``; ``commit`` one sync committed in
                         one transaction; ``conflicts`` the conflict log.
  ``gpkg_connection``    SQLite connections; ``gpkg_files`` moving a finished GeoPackage into
                         place (checkpoint, then move) and removing one with its sidecars.
  ``sync_lock``          one sync-type operation per geodatabase.

Sync
  ``sync_model``         parameters and results (``SyncCounts``: the one change-count type;
                         ``RejectedEdit``; ``SyncLayerResult.as_row()`` for every report).
  ``geodatabase_sync``   ``GeodatabaseSyncTask``: synchronize one geodatabase (the algorithm),
                         generate one, unregister it.
  ``sync``               ``OfflineMapSyncTask``: every geodatabase of a map, check for updates.
  ``scheduled_updates``  the portal's update packages of ahead-of-time maps: list, apply,
                         download a package as a geodatabase.

Taking offline and removing
  ``webmap``             web map / service URLs -> the services and layers that go offline
                         (the job and the Take-offline dialog's layer list).
  ``replica_download``   createReplica -> partial GeoPackage -> moved into place, and the undo
                         (unregister, delete) of a failed run: take-offline and generate.
  ``take_offline``       ``OfflineMapTask``: on demand and preplanned map areas.
  ``offline_map``        the offline-map folder: manifest, geodatabases, update capabilities,
                         ``OfflineMap.conflicts()``.
  ``removal``            removing a map or a geodatabase (unregistering its replicas).

Basemaps
  ``basemap``            the web map's basemap taken offline: ``BasemapOptions``, estimates,
                         exportTiles or tile-by-tile downloads, map-area tile packages, the
                         manifest's basemap entries (``offline_map.BasemapEntry``).
  ``tile_scheme``        tile math: the tiling scheme from ``tileInfo``, area -> tile ranges.
  ``tile_store``         GeoPackage tiles and MBTiles written with sqlite3, resumable partials.
  ``tile_package``       reading ``.tpkx``/``.vtpk`` (Compact Cache V2 bundles), bounded.

Shared
  ``enums``              SDK enumerations; ``PreplannedUpdateMode`` says what each mode means.
  ``errors``             every exception the core raises on purpose.
  ``jobs``               ``Job`` (run, start, cancel, progress) and ``sub_progress``.
  ``gdal_mode``          GDAL's exception mode for a block of code, restored afterwards.
"""
