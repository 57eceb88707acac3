"""OpenID Connect and OAuth 2 endpoints, and the server-rendered login pages.

Each route parses, calls the provider, and maps `OAuthError` to the RFC 6749 JSON shape
(`{"error", "error_description"}`); form fields are read by hand so a malformed request is an
`invalid_request`, never a 422 or a 500.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from identity.domain.devices import DEVICE_COOKIE_MAX_AGE_S
from identity.domain.errors import OAuthError
from identity.domain.model import ACR_VALUES, LOA_SUBSTANTIAL, acr_rank
from identity.domain.security import new_secret
from identity.service_layer.provider import (
    AuthRequest,
    BadClientRequest,
    DeviceSighting,
    Provider,
    RedirectError,
    Session,
    add_query,
)

SESSION_COOKIE = "mutualis_session"
#: A random id per browser, to tell a login from a new device (identity.domain.devices).
DEVICE_COOKIE = "mutualis_device"
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{32}$")
GENERIC_LOGIN_ERROR = "Identifiant ou mot de passe incorrect, ou trop de tentatives. Réessayez."
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: No form of ours has more than a dozen fields; more is not a request to read.
MAX_FORM_FIELDS = 100
#: The login pages load nothing from anywhere: one inline stylesheet, forms posting back here.
#: No `form-action`: browsers apply it to the redirect to the client after a login.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'"
)

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent.parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def page(title: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template("page.html").render(title=title, **context)
    return HTMLResponse(
        html, status_code=status, headers={**NO_STORE, "Content-Security-Policy": PAGE_CSP}
    )


def oauth_error(error: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    if error.status == 401:
        scheme = "Bearer" if error.error == "invalid_token" else "Basic"
        headers["WWW-Authenticate"] = f'{scheme} error="{error.error}"'
    elif error.status == 429:
        headers["Retry-After"] = "60"
    return JSONResponse(
        {"error": error.error, "error_description": error.description},
        status_code=error.status,
        headers=headers,
    )


def address_of(request: Request) -> str:
    """The peer address that throttling counts failures against."""
    return request.client.host if request.client else "unknown"


async def form_of(request: Request) -> dict[str, str]:
    """Form fields as strings; anything that is not a form counts as an empty form.

    Parsed with `parse_qsl` rather than Starlette's general form parser (built for multipart
    too): every token request goes through here, and that parser was a tenth of its cost.
    A repeated field keeps its last value, as with Starlette.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return {}
    try:
        body = (await request.body()).decode("utf-8")
        return dict(parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
    except (ValueError, UnicodeDecodeError):
        return {}


def oidc_router(provider: Provider, *, secure_cookies: bool) -> APIRouter:
    router = APIRouter(tags=["oidc"])
    issuer = provider.issuer

    def with_session_cookie(response: Response, session: Session) -> Response:
        response.set_cookie(
            SESSION_COOKIE,
            session.session_id,
            max_age=provider.settings.session_ttl_s,
            httponly=True,
            secure=secure_cookies,
            samesite="lax",
            path="/",
        )
        return response

    def device_of(request: Request) -> DeviceSighting:
        """The browser's device cookie (a new one if it has none or a malformed one)."""
        device_id = request.cookies.get(DEVICE_COOKIE, "")
        if not _DEVICE_ID.match(device_id):
            device_id = new_secret(24)
        return DeviceSighting(device_id=device_id, user_agent=request.headers.get("user-agent"))

    def with_device_cookie(response: Response, device: DeviceSighting) -> Response:
        # Set again at every login, so a browser in use keeps being recognised.
        response.set_cookie(
            DEVICE_COOKIE,
            device.device_id,
            max_age=DEVICE_COOKIE_MAX_AGE_S,
            httponly=True,
            secure=secure_cookies,
            samesite="lax",
            path="/",
        )
        return response

    async def current_session(request: Request) -> Session | None:
        return await provider.session(request.cookies.get(SESSION_COOKIE))

    def back_to_client(location: str, new_session: Session | None = None) -> Response:
        response = RedirectResponse(location, status_code=303, headers=NO_STORE)
        return with_session_cookie(response, new_session) if new_session else response

    async def login_page(
        auth: AuthRequest, pending_id: str, error: str | None = None, username: str = ""
    ) -> HTMLResponse:
        client = await provider.stores.clients.find(auth.client_id)
        return page(
            "Connexion",
            status=400 if error else 200,
            mode="password",
            action="/login",
            request_id=pending_id,
            client_name=client.name if client else None,
            error=error,
            username=username,
        )

    def otp_page(pending_id: str, error: str | None = None) -> HTMLResponse:
        return page(
            "Vérification en deux étapes",
            status=400 if error else 200,
            mode="otp",
            action="/login/otp",
            request_id=pending_id,
            error=error,
        )

    @router.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "jwks_uri": f"{issuer}/jwks",
            "revocation_endpoint": f"{issuer}/revoke",
            "introspection_endpoint": f"{issuer}/introspect",
            "end_session_endpoint": f"{issuer}/logout",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "acr",
                "amr",
                "azp",
                "sid",
                "tenant",
                "kind",
                "roles",
                "name",
                "preferred_username",
                "email",
                "email_verified",
            ],
            "acr_values_supported": list(ACR_VALUES),
            "prompt_values_supported": ["none", "login", "consent"],
            "authorization_response_iss_parameter_supported": True,
            "ui_locales_supported": ["fr"],
        }

    @router.get("/jwks")
    async def jwks() -> JSONResponse:
        return JSONResponse(
            await provider.keys.public_jwks(), headers={"Cache-Control": "max-age=60"}
        )

    @router.api_route("/authorize", methods=["GET", "POST"])
    async def authorize(request: Request) -> Response:
        params = dict(request.query_params) if request.method == "GET" else await form_of(request)
        try:
            auth = await provider.validate_authorization(params)
        except BadClientRequest as error:
            return page("Demande refusée", status=400, mode="message", message=str(error))
        except RedirectError as error:
            return RedirectResponse(error.location, status_code=303)
        # prompt=login asks for a fresh login whatever the session: no need to look it up.
        session = None if auth.prompt == "login" else await current_session(request)
        if provider.session_suffices(session, auth):
            assert session is not None
            return back_to_client(await provider.issue_code(auth, session))
        if auth.prompt == "none":
            return RedirectResponse(
                add_query(auth.redirect_uri, {"error": "login_required", "state": auth.state}),
                status_code=303,
            )
        if session is not None and auth.prompt != "login" and auth.acr_required == LOA_SUBSTANTIAL:
            user = await provider.stores.users.find(session.user_id)
            if user is not None and user.totp_secret:
                # Step-up: the person is known, only the second factor is missing.
                return otp_page(provider.save_pending(auth, user_id=user.id))
        return await login_page(auth, provider.save_pending(auth))

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await form_of(request)
        pending_id = form.get("request", "")
        pending = provider.load_pending(pending_id)
        if pending is None:
            return page(
                "Demande expirée",
                status=400,
                mode="message",
                message="Cette demande de connexion a expiré. Revenez à l'application.",
            )
        auth, _ = pending
        address = address_of(request)
        username = form.get("username", "")[:254]
        user = await provider.check_password(username, form.get("password", "")[:1024], address)
        if user is None:
            return await login_page(auth, pending_id, GENERIC_LOGIN_ERROR, username)
        if acr_rank(auth.acr_required) >= acr_rank(LOA_SUBSTANTIAL) and user.totp_secret:
            # The password was right: the next step's token names the account.
            return otp_page(provider.save_pending(auth, user_id=user.id))
        device = device_of(request)
        session, location = await provider.sign_in(user, ["pwd"], auth, None, device)
        return with_device_cookie(back_to_client(location, session), device)

    @router.post("/login/otp")
    async def login_otp(request: Request) -> Response:
        form = await form_of(request)
        pending_id = form.get("request", "")
        pending = provider.load_pending(pending_id)
        if pending is None or pending[1] is None:
            return page(
                "Demande expirée",
                status=400,
                mode="message",
                message="Cette demande de connexion a expiré. Revenez à l'application.",
            )
        auth, user_id = pending
        user = await provider.stores.users.find(user_id or "")
        if (
            user is None
            or user.disabled
            or not await provider.check_otp(user, form.get("code", ""))
        ):
            return otp_page(pending_id, "Code incorrect ou déjà utilisé. Réessayez.")
        previous = await current_session(request)
        amr = ["pwd", "otp"]
        device = device_of(request)
        session, location = await provider.sign_in(user, amr, auth, previous, device)
        return with_device_cookie(back_to_client(location, session), device)

    @router.post("/token")
    async def token(request: Request) -> Response:
        try:
            body = await provider.token(
                await form_of(request), request.headers.get("authorization"), address_of(request)
            )
        except OAuthError as error:
            return oauth_error(error)
        return JSONResponse(body, headers=NO_STORE)

    @router.api_route("/userinfo", methods=["GET", "POST"])
    async def userinfo(request: Request) -> Response:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not value:
                raise OAuthError("invalid_token", "a Bearer access token is required", 401)
            claims = await provider.verify_access_token(value.strip(), "mutualis:identity")
            if "openid" not in str(claims.get("scope", "")).split():
                raise OAuthError("insufficient_scope", "the openid scope is required", 403)
            user = await provider.stores.users.find(str(claims["sub"]))
            if user is None:
                raise OAuthError("invalid_token", "the account no longer exists", 401)
        except OAuthError as error:
            return oauth_error(error)
        from identity.service_layer.provider import profile_claims

        scopes = str(claims.get("scope", "")).split()
        info = {"sub": user.id, "tenant": user.tenant, "kind": user.kind, "roles": user.roles}
        info.update(profile_claims(user, scopes))
        return JSONResponse(info, headers=NO_STORE)

    @router.post("/introspect")
    async def introspect(request: Request) -> Response:
        form = await form_of(request)
        try:
            client = await provider.authenticate_client(
                form, request.headers.get("authorization"), address_of(request)
            )
            body = await provider.introspect(client, form.get("token"))
        except OAuthError as error:
            return oauth_error(error)
        return JSONResponse(body, headers=NO_STORE)

    @router.post("/revoke")
    async def revoke(request: Request) -> Response:
        form = await form_of(request)
        try:
            client = await provider.authenticate_client(
                form, request.headers.get("authorization"), address_of(request)
            )
            await provider.revoke(client, form.get("token"))
        except OAuthError as error:
            return oauth_error(error)
        return Response(status_code=200, headers=NO_STORE)

    @router.api_route("/logout", methods=["GET", "POST"])
    async def logout(request: Request) -> Response:
        params = dict(request.query_params) if request.method == "GET" else await form_of(request)
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            await provider.end_session(session_id)
        client_id = params.get("client_id")
        hint = params.get("id_token_hint")
        if hint:
            claims = await provider.id_token_claims(hint)
            if claims is not None:
                client_id = client_id or str(claims.get("aud"))
        target = params.get("post_logout_redirect_uri")
        response: Response
        client = await provider.stores.clients.find(client_id or "")
        if target and client is not None and target in client.post_logout_redirect_uris:
            response = RedirectResponse(
                add_query(target, {"state": params.get("state")}), status_code=303
            )
        else:
            response = page("Déconnexion", mode="message", message="Vous êtes déconnecté.")
        response.delete_cookie(SESSION_COOKIE, path="/", secure=secure_cookies, httponly=True)
        return response

    return router
