"""The small portal: items and their data (web maps list the services' layers and tables)."""

from __future__ import annotations

import json

from .errors import ApiError
from .store import Tx


def absolute_urls(value, services_url: str):
    """`value` with the stored "{services}" placeholder replaced by the server's services URL."""
    # Item data is stored with a placeholder so that URLs follow the server's port.
    text = json.dumps(value).replace("{services}", services_url)
    return json.loads(text)


def existing_item(tx: Tx, item_id: str) -> tuple[dict, dict | None]:
    """The item and its data; raises the portal's error for an unknown item."""
    found = tx.item(item_id)
    if found is None:
        raise ApiError(
            400,
            f"Item '{item_id[:64]}' does not exist or is inaccessible.",
            ["Item does not exist or is inaccessible."],
        )
    return found


def item(tx: Tx, item_id: str, root_url: str) -> dict:
    return absolute_urls(existing_item(tx, item_id)[0], f"{root_url}/rest/services")


def item_data(tx: Tx, item_id: str, root_url: str) -> dict:
    return absolute_urls(existing_item(tx, item_id)[1] or {}, f"{root_url}/rest/services")


def portal_rest_info(root_url: str, auth_on: bool) -> dict:
    """`/sharing/rest/info`: what clients (the ArcGIS API for Python, us) ask a portal first."""
    return {
        "owningSystemUrl": root_url,
        "authInfo": {
            "isTokenBasedSecurity": auth_on,
            "tokenServicesUrl": f"{root_url}/sharing/rest/generateToken",
        },
    }


def portal_self(root_url: str, auth_on: bool) -> dict:
    return {
        "id": "reference",
        "name": "Reference portal",
        "isPortal": True,
        "portalName": "Reference portal",
        "currentVersion": "10.3",
        "supportsOAuth": False,
        "authInfo": {
            "isTokenBasedSecurity": auth_on,
            "tokenServicesUrl": f"{root_url}/tokens/generateToken",
        },
    }
