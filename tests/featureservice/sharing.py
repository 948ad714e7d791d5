"""The portal's sign-in and browsing endpoints (OAuth 2.0, community, content, search,
thumbnails): routes and dispatch, so that `app.py` only forwards to them."""

from __future__ import annotations

import json

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .auth import Auth
from .community import Community, thumbnail_png
from .errors import ApiError
from .oauth import OAuth
from .params import Params
from .portal import existing_item, portal_self
from .store import Store

_SHARING = "/arcgis/sharing/rest"
_ROUTES = {
    f"{_SHARING}/oauth2/authorize": "oauth_authorize",
    f"{_SHARING}/oauth2/token": "oauth_token",
    f"{_SHARING}/oauth2/revokeToken": "oauth_revoke",
    f"{_SHARING}/community/self": "community_self",
    f"{_SHARING}/content/users/<owner>": "user_content",
    f"{_SHARING}/content/groups/<group_id>": "group_content",
    f"{_SHARING}/search": "search",
    f"{_SHARING}/content/items/<item_id>/info/<path:name>": "item_thumbnail",
    f"{_SHARING}/portals/self": "portal_self",
}
ENDPOINTS = set(_ROUTES.values())
_NEEDS_USER = {"community_self", "user_content", "group_content"}


def rules() -> list[Rule]:
    return [Rule(path, endpoint=name, strict_slashes=False) for path, name in _ROUTES.items()]


def _json(body: dict, status: int = 200) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json"
    )


class Sharing:
    """Handles the endpoints of :data:`ENDPOINTS` for one reference app."""

    def __init__(self, store: Store, auth: Auth):
        self.store = store
        self.auth = auth
        self.oauth = OAuth(auth)
        self.community = Community(auth.users)

    def _user(self, request, params: Params, endpoint: str) -> str | None:
        # Search, thumbnails and portals/self answer anonymous callers with what is public.
        if endpoint in _NEEDS_USER or self.auth.token_of(request, params):
            return self.auth.user_for(request, params)
        return None

    def handle(self, request, params: Params, endpoint: str, args: dict, root_url: str):
        if endpoint == "oauth_authorize":
            return self.oauth.authorize(request, params)
        if endpoint == "oauth_token":
            return self.oauth.token(params)
        if endpoint == "oauth_revoke":
            return self.oauth.revoke(params)
        user = self._user(request, params, endpoint)
        services = f"{root_url}/rest/services"
        if endpoint == "portal_self":
            body = portal_self(root_url, self.auth.enabled)
            body["supportsOAuth"] = self.oauth.enabled
            body["id"] = "Rf0OrgIdReference"
            if user is not None:
                body["user"] = self.community.user(user)
            return _json(body)
        if endpoint == "community_self":
            return _json(self.community.self_(user))
        with self.store.read() as tx:
            if endpoint == "user_content":
                return _json(self.community.user_content(tx, args["owner"], user, params, services))
            if endpoint == "group_content":
                return _json(
                    self.community.group_content(tx, args["group_id"], user, params, services)
                )
            if endpoint == "search":
                return _json(self.community.search(tx, user, params, services))
            item, _data = existing_item(tx, args["item_id"])
            self.community.check_item(tx, item, user)
        if item.get("thumbnail") != args["name"]:
            raise ApiError(400, "Resource does not exist or is inaccessible.")
        return Response(thumbnail_png(args["item_id"]), mimetype="image/png")

    def check_item(self, tx, item: dict, user: str | None) -> None:
        """The portal's 403 for an item `user` may not read (item and item data endpoints)."""
        self.community.check_item(tx, item, user)
