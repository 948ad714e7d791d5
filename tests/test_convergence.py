"""A short, deterministic run of the convergence-under-faults suite (tests/convergence.py):
three replicas of the Demo map, random offline edits, random sync directions, faults and
killed sync workers, then a fault-free round. Long runs: tests/tools/stress.py."""

from __future__ import annotations

import pytest

from tests.convergence import (
    ServiceModel,
    State,
    StressConfig,
    geometry_print,
    norm_value,
    parse_date,
    run_stress,
)


def test_replicas_converge_under_faults_without_losing_or_duplicating_edits(tmp_path):
    config = StressConfig(seed=4, rounds=15, replicas=3)

    report = run_stress(config, tmp_path)

    details = "\n".join(report.lines() + report.problems + [config.reproducer()])
    assert report.ok, details
    # The run really exercised what it claims to (otherwise it proves nothing).
    assert report.edits > 20 and report.uploads_committed > 5, details
    assert report.faults_fired > 0 and report.kills > 0, details
    assert (report.lost, report.duplicates, report.divergences) == (0, 0, 0)


def test_token_expiry_and_auth_do_not_break_convergence(tmp_path):
    config = StressConfig(seed=7, rounds=6, replicas=3, auth=True)

    report = run_stress(config, tmp_path)

    assert report.ok, "\n".join(report.lines() + report.problems + [config.reproducer()])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_long_run_with_every_kind_of_trouble(tmp_path, seed):
    # Not in `make test` (marked slow): about a minute each.
    config = StressConfig(
        seed=seed, rounds=150, replicas=4, auth=True, hot_rate=0.7, concurrent_rate=0.3
    )

    report = run_stress(config, tmp_path)

    assert report.ok, "\n".join(report.lines() + report.problems + [config.reproducer()])


# -- the model and the normalisation the checks rely on ------------------------------------


def _model():
    from tests.convergence import FieldInfo, LayerInfo, Row

    info = LayerInfo(
        id=0,
        table="Points",
        geometry_type="esriGeometryPoint",
        has_z=False,
        has_m=False,
        geometry_column="geom",
        gid_field="GlobalID",
        attachment_table="Points__ATTACH",
        fields={
            "name": FieldInfo("name", "esriFieldTypeString", 100, ()),
            "visits": FieldInfo("visits", "esriFieldTypeInteger", None, ()),
        },
    )
    gid = "{11111111-1111-4111-8111-111111111111}"
    initial = State({0: {gid: Row({"name": "a", "visits": 1}, ((1.0, 2.0),))}}, {0: {}})
    return ServiceModel({0: info}, initial), gid


def _update(gid, geometry=None, **attributes):
    feature = {"attributes": {"GlobalID": gid, **attributes}}
    if geometry is not None:
        feature["geometry"] = geometry
    return feature


def test_model_last_synchronized_edit_wins_per_attribute_and_geometry():
    model, gid = _model()
    model.apply([{"id": 0, "features": {"updates": [_update(gid, name="first", visits=5)]}}])
    model.apply([{"id": 0, "features": {"updates": [_update(gid, {"x": 3, "y": 4}, name="b")]}}])
    row = model.features[0][gid]
    assert row.attrs == {"name": "b", "visits": 5}
    assert row.geom == ((3.0, 4.0),)


def test_model_deletes_win_over_later_updates_and_replayed_deletes_succeed():
    model, gid = _model()
    model.apply([{"id": 0, "features": {"deleteIds": [gid]}}])
    outcomes = model.apply(
        [{"id": 0, "features": {"updates": [_update(gid, name="late")], "deleteIds": [gid]}}]
    )
    assert [(kind, ok) for _l, _a, kind, _g, ok, _p in outcomes] == [
        ("update", False),
        ("delete", True),
    ]
    assert gid not in model.features[0]


def test_model_replayed_add_overwrites_what_it_carries_and_adds_no_row():
    model, gid = _model()
    add = {"attributes": {"GlobalID": gid.lower(), "name": "again"}, "geometry": {"x": 9, "y": 9}}
    model.apply([{"id": 0, "features": {"adds": [add]}}])
    assert list(model.features[0]) == [gid]
    assert model.features[0][gid].attrs == {"name": "again", "visits": 1}


def test_model_attachment_of_a_deleted_parent_is_rejected():
    model, gid = _model()
    model.apply([{"id": 0, "features": {"deleteIds": [gid]}}])
    attachment = {
        "globalId": "{22222222-2222-4222-8222-222222222222}",
        "parentGlobalId": gid,
        "name": "a.txt",
        "contentType": "text/plain",
        "data": "YQ==",
    }
    outcomes = model.apply([{"id": 0, "attachments": {"adds": [attachment]}}])
    assert outcomes[0][4] is False
    assert model.attachments[0] == {}


@pytest.mark.parametrize(
    ("esri_type", "a", "b"),
    [
        ("esriFieldTypeDate", "2024-01-01T08:30:00.000Z", 1704097800000),
        ("esriFieldTypeDate", "2024-01-01T08:30:00Z", 1704097800000),
        (
            "esriFieldTypeGUID",
            "1b3c137b-1177-4618-8e34-fa77ae7024ed",
            "{1B3C137B-1177-4618-8E34-FA77AE7024ED}",
        ),
        ("esriFieldTypeDouble", 1.0000000001, 1.0),
        ("esriFieldTypeInteger", 3.0, 3),
    ],
)
def test_values_from_geopackages_and_uploads_compare_equal(esri_type, a, b):
    assert norm_value(esri_type, a) == norm_value(esri_type, b)


def test_geometry_prints_ignore_ring_orientation_but_not_coordinates():
    ring = [[0, 0], [0, 10], [10, 10], [0, 0]]
    assert geometry_print({"rings": [ring]}) == geometry_print({"rings": [ring[::-1]]})
    assert geometry_print({"rings": [ring]}) != geometry_print(
        {"rings": [[[0, 0], [0, 11], [10, 10], [0, 0]]]}
    )
    assert geometry_print({"x": None, "y": None}) is None
    assert parse_date(None) is None
