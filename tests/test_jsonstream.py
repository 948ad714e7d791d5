"""The streaming result-file reader: shapes, tolerated variants, errors and flat memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from plugin.core import jsonstream
from plugin.core.errors import ServiceError, UnusableAnswerError
from plugin.core.jsonstream import read_result


def _feature(i: int) -> dict:
    return {
        "attributes": {
            "OBJECTID": i,
            "GlobalID": f"{{{i:08X}-0000-4000-8000-000000000000}}",
            "Name": f"Bäckerei + & \" \\ ' % n°{i}",
            "Value": i * 1.5,
        },
        "geometry": {"x": 1000.0 + i, "y": -2000.5 - i},
    }


def _write(tmp_path: Path, obj, name: str = "result.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _write_large(path: Path, n: int) -> None:
    """A createReplica result with ``n`` point features, written without holding it in memory."""
    with open(path, "w", encoding="utf-8") as out:
        out.write('{"replicaName": "big", "replicaID": "{AAAA}", "replicaServerGen": "77",')
        out.write('"layers": [{"id": 0, "features": [')
        for i in range(n):
            if i:
                out.write(",\n")
            out.write(json.dumps(_feature(i)))
        out.write('], "attachments": []}], "syncModel": "perReplica"}')


def test_create_replica_result_yields_features_and_attachments_per_layer(tmp_path):
    result = {
        "replicaName": "r",
        "replicaID": "{R}",
        "responseType": "esriReplicaResponseTypeData",
        "replicaServerGen": 2352,
        "layers": [
            {"id": 0, "features": [_feature(1), _feature(2)], "attachments": [{"globalId": "{A}"}]},
            {"id": 3, "features": [{"attributes": {"x": 1}}]},
        ],
    }
    header, events = read_result(_write(tmp_path, result))
    assert header["replicaID"] == "{R}"
    assert header["replicaServerGen"] == 2352
    assert list(events) == [
        (0, "features", _feature(1)),
        (0, "features", _feature(2)),
        (0, "attachments", {"globalId": "{A}"}),
        (3, "features", {"attributes": {"x": 1}}),
    ]


def test_synchronize_result_yields_edits_and_results_with_dotted_sections(tmp_path):
    result = {
        "replicaID": "{R}",
        "responseType": "esriReplicaResponseTypeEdits",
        "edits": [
            {
                "id": 1,
                "features": {"adds": [_feature(5)], "updates": [], "deleteIds": ["{D1}", 17]},
                "attachments": {"adds": [{"globalId": "{AT}"}], "deleteIds": ["{AD}"]},
                "addResults": [{"globalId": "{G}", "success": True}],
                "updateResults": [{"globalId": "{U}", "success": False, "error": {"code": 1019}}],
                "attachmentResults": {"addResults": [{"globalId": "{AT}", "success": True}]},
            }
        ],
        "layerServerGens": [{"id": 1, "serverGen": 12}],
    }
    header, events = read_result(_write(tmp_path, result))
    got = list(events)
    assert got == [
        (1, "features.adds", _feature(5)),
        (1, "features.deleteIds", "{D1}"),
        (1, "features.deleteIds", 17),
        (1, "attachments.adds", {"globalId": "{AT}"}),
        (1, "attachments.deleteIds", "{AD}"),
        (1, "addResults", {"globalId": "{G}", "success": True}),
        (1, "updateResults", {"globalId": "{U}", "success": False, "error": {"code": 1019}}),
        (1, "attachmentResults.addResults", {"globalId": "{AT}", "success": True}),
    ]
    # a top-level value after the arrays is in the header once the events are consumed
    assert header["layerServerGens"] == {1: 12}


def test_generations_as_strings_and_layer_gens_as_json_string_are_parsed(tmp_path):
    result = {
        "replicaServerGen": "9007199254740993",
        "layerServerGens": json.dumps([{"id": 0, "serverGen": "5"}, {"id": "2", "serverGen": 7}]),
        "edits": [],
    }
    header, events = read_result(_write(tmp_path, result))
    assert list(events) == []
    assert header["replicaServerGen"] == 9007199254740993  # beyond float precision: kept exact
    assert header["layerServerGens"] == {0: 5, 2: 7}


def test_layer_entry_with_id_after_its_arrays_is_buffered_and_attributed(tmp_path):
    text = (
        '{"layers": [{"features": [{"a": 1}, {"a": 2}], "attachments": [{"b": 1}], "id": 4},'
        ' {"id": 5, "features": [{"a": 3}]}]}'
    )
    path = tmp_path / "late.json"
    path.write_text(text, encoding="utf-8")
    _, events = read_result(path)
    assert list(events) == [
        (4, "features", {"a": 1}),
        (4, "features", {"a": 2}),
        (4, "attachments", {"b": 1}),
        (5, "features", {"a": 3}),
    ]


def test_values_spanning_chunk_boundaries_are_decoded_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream, "_CHUNK", 7)
    big = "x" * 50_000
    result = {
        "replicaServerGen": 123456789,
        "layers": [
            {
                "id": 0,
                "features": [{"attributes": {"n": 1234567.125, "s": big}}, 98765],
                "attachments": [{"data": big + "é€"}],
            }
        ],
        "tail": 31415926,
    }
    header, events = read_result(_write(tmp_path, result))
    assert header["replicaServerGen"] == 123456789
    assert list(events) == [
        (0, "features", {"attributes": {"n": 1234567.125, "s": big}}),
        (0, "features", 98765),
        (0, "attachments", {"data": big + "é€"}),
    ]
    assert header["tail"] == 31415926


def test_whitespace_bom_and_empty_arrays_are_accepted(tmp_path):
    path = tmp_path / "pretty.json"
    path.write_text(
        "\ufeff" + json.dumps({"layers": [{"id": 0, "features": []}], "edits": []}, indent=4),
        encoding="utf-8",
    )
    header, events = read_result(path)
    assert list(events) == []
    assert header == {}


def test_truncated_file_raises_a_clear_error_while_iterating(tmp_path):
    path = tmp_path / "cut.json"
    full = json.dumps({"replicaID": "{R}", "layers": [{"id": 0, "features": [_feature(1)] * 5}]})
    path.write_text(full[: len(full) // 2], encoding="utf-8")
    header, events = read_result(path)
    assert header["replicaID"] == "{R}"
    with pytest.raises(ServiceError, match="incomplete"):
        list(events)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("<html><body>Proxy error</body></html>", "web page"),
        ("", "empty"),
        ("[1, 2]", "not valid JSON"),
    ],
)
def test_a_file_that_is_not_a_result_is_refused_immediately(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ServiceError, match=match):
        read_result(path)


def _streamed_with_peak(path: Path, check) -> tuple[dict, int, int]:
    """Read ``path`` to the end keeping no event (each goes to ``check(index, event)``):
    ``(header, number of events, peak traced memory)``."""
    tracemalloc.start()
    try:
        header, events = read_result(path)
        count = 0
        for event in events:
            check(count, event)
            count += 1
            del event
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return header, count, peak


def test_memory_stays_flat_while_streaming_many_features(tmp_path):
    path = tmp_path / "big.json"
    n = 20_000
    _write_large(path, n)
    size = path.stat().st_size

    def check(_index, event):
        assert event[:2] == (0, "features")

    header, count, peak = _streamed_with_peak(path, check)
    assert count == n
    assert header["syncModel"] == "perReplica"
    assert header["replicaServerGen"] == 77
    # a whole-file json.load would need several times the file size
    assert peak < size / 4, (peak, size)


def test_memory_stays_flat_while_streaming_elements_larger_than_a_batch(tmp_path):
    """Elements too large to be decoded together (big polygons, photos) are read one at a
    time without the buffer growing with the file."""
    path = tmp_path / "big_elements.json"
    n, vertices = 500, 1500  # about 40 KB of text per feature, 13 MB in all
    ring = [[round(i * 1.5, 3), round(i * 2.25, 3)] for i in range(vertices)]
    with open(path, "w", encoding="utf-8") as out:
        out.write('{"layers": [{"id": 0, "features": [')
        for i in range(n):
            out.write(
                ("," if i else "")
                + json.dumps({"attributes": {"i": i}, "geometry": {"rings": [ring]}})
            )
        out.write("]}]}")
    size = path.stat().st_size

    def check(index, event):
        assert event[2]["attributes"]["i"] == index

    _header, count, peak = _streamed_with_peak(path, check)
    assert count == n
    # the read buffer and an element or two, whatever the size of the file (13 MB here)
    assert size > 10_000_000 and peak < 3_000_000, (peak, size)


def test_a_hundred_thousand_features_stream_in_order(tmp_path):
    path = tmp_path / "huge.json"
    _write_large(path, 100_000)
    _, events = read_result(path)
    expected = 0
    for _, _, item in events:
        assert item["attributes"]["OBJECTID"] == expected
        expected += 1
    assert expected == 100_000


def _events_of_whole(result: dict) -> list:
    """The events a result should give, from the whole document (no streaming)."""
    events = []
    for array in jsonstream.LAYER_ARRAYS:
        for entry in result.get(array, []):
            for key, value in entry.items():
                if key == "id":
                    continue
                groups = value.items() if isinstance(value, dict) else [(None, value)]
                for sub, items in groups:
                    section = key if sub is None else f"{key}.{sub}"
                    events.extend((entry["id"], section, item) for item in items)
    return events


_MISLEADING = ["},{", "}, {", '}]},{"id": 9, "features": [{', '"},{"', '\\"},{\\"', "{", "}", ","]


@pytest.mark.parametrize("chunk", [7, 64, 1000, 1 << 16])
def test_elements_decoded_together_match_the_whole_file_whatever_the_text(
    tmp_path, monkeypatch, chunk
):
    """Elements wholly in the buffer are decoded in one call: text inside strings and nested
    objects built to look like element boundaries, curve segments (objects in arrays),
    several layers and every chunk size give exactly the whole file's values, in order."""
    import random

    monkeypatch.setattr(jsonstream, "_CHUNK", chunk)
    rng = random.Random(chunk)

    def feature(i: int) -> dict:
        text = "".join(rng.choice(_MISLEADING + ["a", " ", "é"]) for _ in range(rng.randrange(12)))
        geometry = (
            {"curvePaths": [[[0, 0], {"c": [[3, 3], [1, 4]]}, {"a": [[5, 5], [4, 4], 0, 1]}]]}
            if i % 3 == 0
            else {"x": i + 0.5, "y": -i}
        )
        return {
            "attributes": {"OBJECTID": i, "note": text, "n": [i, {"k": "},{"}]},
            "geometry": geometry,
        }

    result = {
        "replicaServerGen": 5,
        "edits": [
            {
                "id": layer,
                "features": {
                    "adds": [feature(i) for i in range(rng.randrange(1, 60))],
                    "updates": [feature(i) for i in range(rng.randrange(60))],
                    "deleteIds": [f"{{{i:08X}}}" for i in range(rng.randrange(5))],
                },
                "attachments": {"adds": [{"globalId": "},{", "data": "x" * rng.randrange(200)}]},
            }
            for layer in range(4)
        ],
        "tail": "},{",
    }
    header, events = read_result(_write(tmp_path, result))
    assert list(events) == _events_of_whole(result)
    assert header["tail"] == "},{"


def test_text_that_defeats_decoding_together_is_still_read_one_element_at_a_time(
    tmp_path, monkeypatch
):
    """Strings that end every chunk inside a look-alike boundary make each attempt to decode
    several elements fail: the reader stops trying and reads on element by element."""
    monkeypatch.setattr(jsonstream, "_CHUNK", 256)
    features = [{"attributes": {"s": "},{" * 200, "i": i}} for i in range(300)]
    header, events = read_result(_write(tmp_path, {"layers": [{"id": 0, "features": features}]}))
    assert [item for _lid, _section, item in events] == features


def test_a_deeply_nested_element_among_others_is_an_unusable_answer(tmp_path):
    deep = '{"a": ' * 100_000 + "1" + "}" * 100_000
    path = tmp_path / "deep.json"
    path.write_text('{"layers": [{"id": 0, "features": [{"b": 1}, ' + deep + ', {"c": 2}]}]}')
    _header, events = read_result(path)
    with pytest.raises(UnusableAnswerError, match="nested too deeply"):
        list(events)
