"""The reference portal's OAuth 2.0 and browsing endpoints, spoken to over HTTP as ArcGIS
documents them (the plugin's own sign-in is tested in test_sign_in*.py)."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import requests

from tests.featureservice.community import (
    ALICE_PRIVATE_MAP_ID,
    CREW_MAP_ID,
    FIELD_CREW_GROUP_ID,
)
from tests.featureservice.oauth import DEFAULT_CLIENT_ID, s256
from tests.featureservice.seed import DEMO_WEBMAP_ID

REDIRECT = "http://127.0.0.1:9/callback"


def _authorize(server, username, password, verifier, state="st", **extra):
    params = {
        "client_id": DEFAULT_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "state": state,
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
    }
    form = dict(params, username=username, password=password, **extra)
    return requests.post(
        f"{server.portal_url}/oauth2/authorize", data=form, allow_redirects=False, timeout=10
    )


def _code(response) -> dict:
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _token(server, **form):
    return requests.post(
        f"{server.portal_url}/oauth2/token",
        data={"client_id": DEFAULT_CLIENT_ID, "f": "json", **form},
        timeout=10,
    ).json()


def _sign_in(server, user="alice", password="alice-secret") -> dict:
    verifier = secrets.token_urlsafe(48)
    code = _code(_authorize(server, user, password, verifier))["code"]
    return _token(
        server,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )


def test_authorization_code_with_pkce_gives_tokens_the_feature_service_accepts(
    secured_reference_server,
):
    server = secured_reference_server
    answer = _sign_in(server)
    assert answer["username"] == "alice"
    assert answer["refresh_token"] and answer["expires_in"] > 0
    info = requests.get(
        server.service_url("Demo"), params={"f": "json", "token": answer["access_token"]}
    ).json()
    assert "error" not in info and info["layers"]


def test_a_code_is_refused_with_a_wrong_verifier_and_works_only_once(secured_reference_server):
    server = secured_reference_server
    verifier = secrets.token_urlsafe(48)
    code = _code(_authorize(server, "alice", "alice-secret", verifier))["code"]
    wrong = _token(
        server,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier="x" * 50,
    )
    assert wrong["error"]["error"] == "invalid_grant"
    again = _token(
        server,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert again["error"]["error"] == "invalid_grant"


def test_refresh_token_gives_a_new_access_token_until_it_expires(secured_reference_server):
    server = secured_reference_server
    first = _sign_in(server)
    renewed = _token(server, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert renewed["access_token"] != first["access_token"]
    assert server.oauth.grants["refresh_token"] == 1
    server.oauth.expire_refresh_tokens()
    refused = _token(server, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refused["error"]["error_description"] == "Invalid refresh_token"


def test_wrong_password_shows_the_form_again_and_cancel_redirects_with_access_denied(
    secured_reference_server,
):
    server = secured_reference_server
    wrong = _authorize(server, "alice", "nope", secrets.token_urlsafe(48))
    assert wrong.status_code == 200 and "Invalid username or password." in wrong.text
    cancelled = _code(_authorize(server, "", "", secrets.token_urlsafe(48), state="s1", cancel="1"))
    assert cancelled == {
        "error": "access_denied",
        "error_description": "The user denied your request.",
        "state": "s1",
    }


def test_the_sign_in_page_escapes_what_it_echoes(secured_reference_server):
    hostile = '"><script>alert(1)</script>'
    page = requests.get(
        f"{secured_reference_server.portal_url}/oauth2/authorize",
        params={
            "client_id": DEFAULT_CLIENT_ID,
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "state": hostile,
            "code_challenge": "abc",
            "code_challenge_method": "S256",
        },
        timeout=10,
    )
    assert page.status_code == 200
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text


def test_unknown_client_and_foreign_redirect_get_an_error_page_not_a_redirect(
    secured_reference_server,
):
    url = f"{secured_reference_server.portal_url}/oauth2/authorize"
    base = {"response_type": "code", "code_challenge": "a", "code_challenge_method": "S256"}
    unknown = requests.get(
        url, params=dict(base, client_id="nope", redirect_uri=REDIRECT), allow_redirects=False
    )
    assert unknown.status_code == 400 and "Invalid client_id" in unknown.text
    foreign = requests.get(
        url,
        params=dict(base, client_id=DEFAULT_CLIENT_ID, redirect_uri="https://evil.example/cb"),
        allow_redirects=False,
    )
    assert foreign.status_code == 400 and "Location" not in foreign.headers


def test_community_self_content_groups_and_search(secured_reference_server):
    server = secured_reference_server
    token = _sign_in(server, "bob", "bob-secret")["access_token"]

    def get(path, **params):
        return requests.get(
            f"{server.portal_url}/{path}", params={"f": "json", "token": token, **params}
        ).json()

    me = get("community/self")
    assert me["username"] == "bob" and [g["id"] for g in me["groups"]] == [FIELD_CREW_GROUP_ID]
    mine = get("content/users/bob")
    assert [i["id"] for i in mine["items"]] == [CREW_MAP_ID] and mine["nextStart"] == -1
    assert get("content/users/alice")["error"]["code"] == 403
    group = get(f"content/groups/{FIELD_CREW_GROUP_ID}")
    assert [i["id"] for i in group["items"]] == [CREW_MAP_ID]
    # bob sees the public demo maps and his crew's map, not alice's private one.
    maps = get("search", q='type:"Web Map"', sortField="title", num=1)
    assert maps["total"] == 3 and maps["num"] == 1 and maps["nextStart"] == 2
    assert maps["results"][0]["title"] == "Demo map with offline settings"
    titles = {i["title"] for i in get("search", q='"crew" AND type:"Web Map"')["results"]}
    assert titles == {"Field crew map"}
    # alice's private map is hers alone: not listed, not readable, no thumbnail.
    assert get("search", q=f"id:{ALICE_PRIVATE_MAP_ID}")["total"] == 0
    assert get(f"content/items/{ALICE_PRIVATE_MAP_ID}")["error"]["code"] == 403
    thumb = requests.get(
        f"{server.portal_url}/content/items/{DEMO_WEBMAP_ID}/info/thumbnail/thumbnail.png",
        params={"token": token},
    )
    assert thumb.headers["Content-Type"] == "image/png" and thumb.content[:4] == b"\x89PNG"


def test_portal_self_says_it_supports_oauth_and_who_is_signed_in(secured_reference_server):
    server = secured_reference_server
    anonymous = requests.get(f"{server.portal_url}/portals/self", params={"f": "json"}).json()
    assert anonymous["supportsOAuth"] is True and "user" not in anonymous
    token = _sign_in(server)["access_token"]
    signed_in = requests.get(
        f"{server.portal_url}/portals/self", params={"f": "json", "token": token}
    ).json()
    assert signed_in["user"]["username"] == "alice"
