"""Templates and static files for the identity pages (T3: auto-escaping, no inline script or style).

Every value reaches HTML through Jinja2 with auto-escaping on for every template (`default=True`,
whatever the file name), and `StrictUndefined` makes a misspelt variable an error instead of an
empty string. Templates contain no `<script>` body and no `style=` attribute: behaviour is in
`static/webauthn.js`, looks in `static/identity.css`, both served from this origin, which is all
the page's Content-Security-Policy allows.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, Final

import segno
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from bastionpay.identity.web.http import PAGE_HEADERS

WEB_DIR: Final = Path(__file__).parent
STATIC_FILES: Final = {
    "identity.css": "text/css; charset=utf-8",
    "webauthn.js": "text/javascript; charset=utf-8",
}
STATIC_PREFIX: Final = "/static/identity/"
# Static files hold no secret and change only with a release; a short cache is harmless.
_STATIC_HEADERS: Final = {
    "cache-control": "public, max-age=300",
    "x-content-type-options": "nosniff",
}


class Renderer:
    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(WEB_DIR / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.static = {name: (WEB_DIR / "static" / name).read_bytes() for name in STATIC_FILES}

    def page(
        self,
        template: str,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        context.setdefault("error", None)
        context.setdefault("notice", None)
        context.setdefault("user", None)
        context.setdefault("csrf", None)
        context.setdefault("webauthn", False)
        body = self.env.get_template(template).render(**context)
        return HTMLResponse(body, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})

    async def serve_static(self, request: Request) -> Response:
        name = str(request.path_params.get("name", ""))
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            return Response("Not found", status_code=404, media_type="text/plain")
        return Response(self.static[name], media_type=media_type, headers=_STATIC_HEADERS)


def qr_data_uri(text: str) -> str:
    """`text` (an otpauth:// URI) as a QR code in an SVG data URI, for `<img src>` (CSP allows
    `img-src data:`). Made here by segno: no third-party service ever sees the TOTP seed."""
    qr = segno.make(text, error="m")
    buffer = io.BytesIO()
    qr.save(buffer, kind="svg", scale=5, border=4, xmldecl=False)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
