"""The offline map folder: manifest format, validation and update capabilities."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from plugin.core.enums import PreplannedUpdateMode
from plugin.core.errors import GeodatabaseError, ManifestError
from plugin.core.offline_map import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    GeodatabaseEntry,
    LayerEntry,
    MapSource,
    OfflineMap,
    OfflineMapManifest,
    OfflineMapUpdateCapabilities,
)

SERVICE_URL = "https://example.com/arcgis/rest/services/Demo/FeatureServer"
AREA = {
    "xmin": -1000.0,
    "ymin": -2000.0,
    "xmax": 3000.0,
    "ymax": 4000.0,
    "spatialReference": {"wkid": 102100, "latestWkid": 3857},
}


def make_manifest(**changes) -> OfflineMapManifest:
    entry = GeodatabaseEntry(
        file="Demo.gpkg",
        service_url=SERVICE_URL,
        title="Demo",
        layers=(
            LayerEntry(id=2, title="Parcels", draw_order=0, opacity=0.5),
            LayerEntry(id=0, title="Trees – Bäume", draw_order=2, visible=False),
            LayerEntry(id=1, title="Roads", draw_order=1),
            LayerEntry(id=3, title="Inspections", is_table=True),
        ),
    )
    manifest = OfflineMapManifest(
        title="Field survey «Nord»",
        source=MapSource(
            portal_url="https://example.com/portal/sharing/rest", webmap_item_id="a" * 32
        ),
        update_mode=PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES,
        geodatabases=(entry,),
        area_of_interest=AREA,
        initial_extent=AREA,
    )
    return replace(manifest, **changes)


def write_map(folder: Path, manifest: OfflineMapManifest | None = None) -> OfflineMap:
    manifest = manifest or make_manifest()
    folder.mkdir(parents=True, exist_ok=True)
    for entry in manifest.geodatabases:
        (folder / entry.file).write_bytes(b"placeholder")
    OfflineMap.write_manifest(folder, manifest)
    return OfflineMap.open(folder)


def edit_manifest_json(folder: Path, edit) -> None:
    path = folder / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_written_manifest_opens_with_the_same_content(tmp_path):
    offline_map = write_map(tmp_path / "map")

    assert offline_map.folder == (tmp_path / "map").absolute()
    assert offline_map.title == "Field survey «Nord»"
    assert offline_map.update_mode is PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES
    assert offline_map.area_of_interest == AREA
    assert offline_map.initial_extent == AREA
    assert offline_map.source.webmap_item_id == "a" * 32
    assert offline_map.manifest == make_manifest(created=offline_map.manifest.created)
    [entry] = offline_map.geodatabases
    assert entry.path == (tmp_path / "map" / "Demo.gpkg").absolute()
    assert entry.path.is_absolute()
    assert entry.service_url == SERVICE_URL
    assert entry.title == "Demo"
    assert entry.layer_ids == [0, 1, 2]
    assert entry.table_ids == [3]
    assert entry.package_item_id is None and entry.generation is None


def test_manifest_file_records_format_version_and_update_mode_by_name(tmp_path):
    write_map(tmp_path)
    data = json.loads((tmp_path / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert data["format_version"] == FORMAT_VERSION == 1
    assert data["update_mode"] == "SYNC_WITH_FEATURE_SERVICES"
    assert data["geodatabases"][0]["file"] == "Demo.gpkg"
    assert data["created"].endswith("+00:00")


def test_layers_in_draw_order_lists_bottom_layer_first_then_tables(tmp_path):
    offline_map = write_map(tmp_path)
    titles = [layer.title for _, layer in offline_map.layers_in_draw_order()]
    assert titles == ["Parcels", "Roads", "Trees – Bäume", "Inspections"]


def test_manifest_of_a_newer_version_is_refused(tmp_path):
    write_map(tmp_path)
    edit_manifest_json(tmp_path, lambda data: data.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ManifestError, match="made by a newer version of Offline Map Sync"):
        OfflineMap.open(tmp_path)


def test_corrupt_manifest_is_refused_as_damaged(tmp_path):
    write_map(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text('{"format_version": 1, "title": ', encoding="utf-8")
    with pytest.raises(ManifestError, match="is damaged"):
        OfflineMap.open(tmp_path)


@pytest.mark.parametrize(
    "edit",
    [
        lambda data: data.pop("format_version"),
        lambda data: data.update(format_version="1"),
        lambda data: data.update(update_mode="EVERY_TUESDAY"),
        lambda data: data["geodatabases"][0].pop("service_url"),
        lambda data: data["geodatabases"][0]["layers"][0].update(id="first"),
    ],
    ids=[
        "no-version",
        "version-as-text",
        "unknown-update-mode",
        "entry-without-url",
        "bad-layer-id",
    ],
)
def test_manifest_with_invalid_content_is_refused_as_damaged(tmp_path, edit):
    write_map(tmp_path)
    edit_manifest_json(tmp_path, edit)
    with pytest.raises(ManifestError, match="is damaged"):
        OfflineMap.open(tmp_path)


def test_manifest_that_is_not_an_object_is_refused(tmp_path):
    write_map(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ManifestError, match="not a JSON object"):
        OfflineMap.open(tmp_path)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        OfflineMap.open(tmp_path / "nowhere")


def test_folder_without_manifest_is_not_an_offline_map(tmp_path):
    with pytest.raises(ManifestError, match=f"has no {MANIFEST_NAME}"):
        OfflineMap.open(tmp_path)


def test_missing_geodatabase_file_is_named_in_the_error(tmp_path):
    write_map(tmp_path)
    (tmp_path / "Demo.gpkg").unlink()
    with pytest.raises(GeodatabaseError, match=r"Demo\.gpkg .*is missing"):
        OfflineMap.open(tmp_path)


@pytest.mark.parametrize(
    "file",
    [
        "../outside.gpkg",
        "sub/Demo.gpkg",
        "/etc/passwd",
        "",
        # Written on Windows, or meant for it: refused on every platform, as basemap files are.
        "..\\outside.gpkg",
        "sub\\Demo.gpkg",
        "C:Demo.gpkg",
        "\\\\server\\share\\Demo.gpkg",
    ],
)
def test_geodatabase_outside_the_folder_is_refused(tmp_path, file):
    write_map(tmp_path)
    edit_manifest_json(tmp_path, lambda data: data["geodatabases"][0].update(file=file))
    with pytest.raises(ManifestError, match="not a file name inside the map folder"):
        OfflineMap.open(tmp_path)


def test_manifest_never_contains_credentials(tmp_path):
    manifest = make_manifest(
        source=MapSource(
            portal_url="https://user:secret@example.com/portal/sharing/rest?token=SECRET1",
            service_urls=(SERVICE_URL + "?token=SECRET2&foo=bar",),
        )
    )
    entry = replace(manifest.geodatabases[0], service_url=SERVICE_URL + "?access_token=SECRET3")
    write_map(tmp_path, replace(manifest, geodatabases=(entry,)))

    text = (tmp_path / MANIFEST_NAME).read_text(encoding="utf-8")
    assert "SECRET" not in text and "secret" not in text
    reopened = OfflineMap.open(tmp_path)
    assert reopened.geodatabases[0].service_url == SERVICE_URL
    assert reopened.source.service_urls == (SERVICE_URL + "?foo=bar",)
    assert reopened.source.portal_url == "https://example.com/portal/sharing/rest"


def test_failed_manifest_write_keeps_the_old_manifest_and_leaves_no_temp_file(tmp_path):
    write_map(tmp_path)
    before = (tmp_path / MANIFEST_NAME).read_bytes()
    unserialisable = make_manifest(area_of_interest={"rings": {1, 2}})
    with pytest.raises(TypeError):
        OfflineMap.write_manifest(tmp_path, unserialisable)
    assert (tmp_path / MANIFEST_NAME).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Demo.gpkg", MANIFEST_NAME]


def test_manifest_write_replaces_the_previous_file_completely(tmp_path):
    offline_map = write_map(tmp_path)
    offline_map.save(replace(offline_map.manifest, title="Renamed"))
    assert OfflineMap.open(tmp_path).title == "Renamed"
    assert offline_map.title == "Renamed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Demo.gpkg", MANIFEST_NAME]


@pytest.mark.parametrize(
    "mode, expected",
    [
        (PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES, (True, False)),
        (PreplannedUpdateMode.NO_UPDATES, (False, False)),
        (PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES, (False, True)),
        (PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES, (True, True)),
    ],
)
def test_update_capabilities_follow_the_update_mode(tmp_path, mode, expected):
    entry = replace(make_manifest().geodatabases[0], package_item_id="b" * 32, generation=12)
    offline_map = write_map(tmp_path, make_manifest(update_mode=mode, geodatabases=(entry,)))
    assert offline_map.update_capabilities == OfflineMapUpdateCapabilities(*expected)


def test_map_without_geodatabases_supports_no_updates(tmp_path):
    offline_map = write_map(tmp_path, make_manifest(geodatabases=()))
    assert offline_map.update_capabilities == OfflineMapUpdateCapabilities(False, False)


def test_ahead_of_time_entry_keeps_package_item_and_generation(tmp_path):
    entry = replace(make_manifest().geodatabases[0], package_item_id="b" * 32, generation=12)
    manifest = make_manifest(
        update_mode=PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES,
        geodatabases=(entry,),
        source=MapSource(
            portal_url="https://example.com/portal/sharing/rest",
            webmap_item_id="a" * 32,
            map_area_item_id="c" * 32,
        ),
    )
    offline_map = write_map(tmp_path, manifest)

    offline_map.replace_geodatabase_entry(replace(offline_map.geodatabases[0], generation=15))

    reopened = OfflineMap.open(tmp_path)
    assert reopened.update_mode is PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES
    assert reopened.source.map_area_item_id == "c" * 32
    assert reopened.geodatabases[0].package_item_id == "b" * 32
    assert reopened.geodatabases[0].generation == 15
    assert offline_map.geodatabases[0].generation == 15


def test_replacing_an_unknown_geodatabase_entry_is_refused(tmp_path):
    offline_map = write_map(tmp_path)
    with pytest.raises(ManifestError, match="has no geodatabase Other.gpkg"):
        offline_map.replace_geodatabase_entry(
            replace(offline_map.geodatabases[0], file="Other.gpkg")
        )
