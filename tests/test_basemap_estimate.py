"""The basemap estimate counts the tiles of the extent the download would use."""

from __future__ import annotations

from plugin.core.basemap import BasemapOptions
from plugin.core.rest import ArcGISClient
from plugin.core.take_offline import OfflineMapTask
from tests.featureservice import seed


def test_without_an_area_the_estimate_is_for_where_the_web_map_opens(reference_server):
    task = OfflineMapTask(
        portal_url=reference_server.portal_url,
        webmap_item_id=seed.DEMO_WEBMAP_ID,
        client=ArcGISClient(),
    )
    options = BasemapOptions(max_level=14)

    whole = task.estimate_basemap(None, options)

    opens_at = task.webmap_extent()
    assert opens_at is not None
    assert whole == task.estimate_basemap(opens_at, options)
    assert whole.tiles > 0 and whole.bytes > 0
    assert {layer.title for layer in whole.layers} == {"Demo topographic", "Demo streets"}
    assert task.estimate_basemap(None, BasemapOptions(mode="online")).tiles == 0


def test_feature_services_have_no_basemap_to_estimate(reference_server):
    task = OfflineMapTask(
        service_urls=[reference_server.service_url(seed.DEMO_SERVICE)], client=ArcGISClient()
    )

    assert task.estimate_basemap(None, BasemapOptions()).layers == ()
