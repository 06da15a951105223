"""The team leads' dashboard in the OpenAPI document: HTML pages and forms.

Not an API for programs: documented so that every route is, with the answers
each page can give. Its authentication is a session cookie set by the login
form, not the bearer token (the pages are `security: []` here).
"""

from __future__ import annotations

from gateway.http.openapi_forms import HTML
from gateway.http.openapi_schema import STR, Schema, header, operation, path_param, problem

_SESSION = ("Needs the session cookie the login form sets (HttpOnly, SameSite=Strict); "
            "without a valid one, or once its token is revoked: 303 to the login page.")


def _page(description: str) -> Schema:
    return {"description": description, "content": {"text/html": {"schema": HTML}}}


def _redirect(description: str) -> Schema:
    return {"description": description, "headers": {"Location": header("where to go")}}


_FORM: Schema = {"type": "object", "properties": {"token": STR, "csrf": STR},
                 "additionalProperties": STR}
_BODY: Schema = {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": _FORM},
    "multipart/form-data": {"schema": _FORM}}}
# A post's body problems, as the problems middleware answers them.
_POSTED: dict[str, Schema] = {
    "400": problem("the form body is broken"),
    "413": problem("the body is over `http.max_body_bytes`"),
    "415": problem("not a form (urlencoded or multipart)"),
    "503": {"$ref": "#/components/responses/ServiceUnavailable"}}


def dashboard_paths() -> dict[str, Schema]:
    unavailable = (503,)
    login = operation(
        "dashboardLogin", "Log in to the dashboard with an API token (a form post)",
        "operations",
        {"303": _redirect("logged in: the session cookie is set; on to /dashboard"),
         "401": _page("the token is unknown or revoked: the form again"),
         "403": _page("the form's CSRF token does not pair with the login cookie, or it "
                      "came from another site, or the token is not an admin's or agent's"),
         "429": {**_page("too many login posts from this address (10, then one in 5 s)"),
                 "headers": {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}},
         **_POSTED}, (), public=True)
    login["requestBody"] = _BODY
    logout = operation(
        "dashboardLogout", "Log out (a form post from the dashboard)", "operations",
        {"303": _redirect("logged out: the session cookie is cleared; on to the login page"),
         "403": _page("the form's CSRF token is not this session's"), **_POSTED},
        (), public=True)
    logout["requestBody"] = _BODY
    return {
        "/dashboard": {"get": operation(
            "dashboard", "The team leads' dashboard (an HTML page with SVG charts)",
            "operations",
            {"200": _page("the dashboard"), "303": _redirect("not logged in: to the login"),
             "400": _page("`days` is not one of 7, 30, 90, or another parameter is given")},
            unavailable, public=True, description=_SESSION,
            params=[{"name": "days", "in": "query", "required": False,
                     "description": "the period shown, in days up to today (UTC)",
                     "schema": {"type": "string", "enum": ["7", "30", "90"]}}])},
        "/dashboard/login": {
            "get": operation(
                "dashboardLoginPage", "The dashboard's login form", "operations",
                {"200": _page("the form, and a login cookie its CSRF token pairs with"),
                 "303": _redirect("already logged in: to the dashboard")},
                unavailable, public=True),
            "post": login,
        },
        "/dashboard/logout": {"post": logout},
        "/dashboard/requests/{reference}": {
            "parameters": [path_param("reference", "a request's reference")],
            "get": operation(
                "dashboardRequest", "One request's summary (linked from the breaches)",
                "operations",
                {"200": _page("the request"), "303": _redirect("not logged in: to the login"),
                 "404": _page("unknown, or outside the token's queues")},
                unavailable, public=True, description=_SESSION),
        },
    }
