"""The two loopback servers Adobe's Web SDK talks to in the capture: the shop (a page and
alloy's standalone build from ``node_modules``) and a fake Adobe Experience Edge (HTTPS,
since alloy only ever calls ``https://{edgeDomain}``) that answers like Edge and keeps
every request body."""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ALLOY_DIST = HERE / "node_modules" / "@adobe" / "alloy" / "dist"
ORG_ID = "0123456789ABCDEF01234567@AdobeOrg"  # the page's orgId (page.html)
# Edge names its cookies kndctr_{orgId with @ as _}_{name}
IDENTITY_COOKIE = f"kndctr_{ORG_ID.replace('@', '_')}_identity"
IDENTITY_MAX_AGE = 34_128_000  # what Edge gives its identity cookie (395 days)


def alloy_version() -> str:
    """The version of @adobe/alloy installed under tests/alloy/node_modules."""
    package = json.loads((ALLOY_DIST.parent / "package.json").read_text())
    return str(package["version"])


def new_ecid() -> str:
    """An Experience Cloud ID as Edge mints them: 38 digits."""
    return str(secrets.randbelow(9 * 10**37) + 10**37)


def identity_cookie(ecid: str) -> str:
    """Edge's identity cookie value: the protobuf ``Identity {string ecid = 1}``, URL-safe
    base64 (alloy decodes it to read the ECID)."""
    raw = ecid.encode()
    return base64.urlsafe_b64encode(bytes([0x0A, len(raw)]) + raw).decode().rstrip("=")


def ecid_of(cookie: str) -> str:
    """The ECID in an identity cookie made by ``identity_cookie``."""
    raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
    return raw[2 : 2 + raw[1]].decode()


@dataclass(frozen=True)
class EdgeRequest:
    """One request alloy sent to Edge: which host and action, and the body as sent."""

    host: str
    path: str
    action: str  # "interact" or "collect"
    body: bytes

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class LoopbackServer:
    """A stdlib HTTP server on a free 127.0.0.1 port, served from a thread (TLS with ``tls``)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None) -> None:
        self._server = _Server(("127.0.0.1", 0), handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._server.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def answer(self, status: int, body: bytes = b"", content_type: str = "", **headers: str) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _ShopHandler(_Quiet):
    FILES = {  # noqa: RUF012  # path -> (file, content type)
        "/alloy.min.js": (ALLOY_DIST / "alloy.min.js", "text/javascript"),
    }

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/favicon.ico":
            self.answer(404)
            return
        file, content_type = self.FILES.get(path, (HERE / "page.html", "text/html; charset=utf-8"))
        self.answer(200, file.read_bytes(), content_type)


def shop_server() -> LoopbackServer:
    """The shop: every path is the page (page.html), and ``/alloy.min.js`` alloy itself."""
    return LoopbackServer(_ShopHandler)


class _EdgeHandler(_Quiet):
    server: _Server

    def do_OPTIONS(self) -> None:
        self.answer(204, **self._cors(), Access_Control_Allow_Methods="POST", Access_Control_Max_Age="600")

    def do_POST(self) -> None:
        edge: FakeEdge = self.server.owner  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlsplit(self.path).path
        action = path.rsplit("/", 1)[-1]
        if not path.startswith("/ee/") or action not in ("interact", "collect"):
            self.answer(404, **self._cors())
            return
        edge.record(EdgeRequest(self.headers.get("Host", ""), path, action, body))
        if action == "collect":  # Edge answers a beacon with no content
            self.answer(204, **self._cors())
            return
        answer = json.dumps(edge.interact_answer(json.loads(body))).encode()
        self.answer(200, answer, "application/json;charset=utf-8", **self._cors())

    def _cors(self) -> dict[str, str]:
        # alloy sends credentialed cross-origin requests (fetch credentials: "include")
        origin = self.headers.get("Origin") or "*"
        return {"Access_Control_Allow_Origin": origin, "Access_Control_Allow_Credentials": "true"}


class FakeEdge(LoopbackServer):
    """Experience Edge's ``/ee/[{location hint}/]v1/{interact,collect}`` over TLS: ``/interact``
    answers with the visitor's ECID (``identity:result``) and, for a new visitor, the
    identity cookie to store (``state:store``), which is all alloy needs to resolve;
    ``/collect`` answers 204. Every request is kept in ``requests``."""

    def __init__(self, cert: Path, key: Path) -> None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        super().__init__(_EdgeHandler, tls)
        self.requests: list[EdgeRequest] = []
        self._changed = threading.Condition()

    def record(self, request: EdgeRequest) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[EdgeRequest]:
        """The requests once there are at least ``count`` (``TimeoutError`` otherwise)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"the fake Edge got {len(self.requests)} requests, expected {count}")
            return list(self.requests)

    @staticmethod
    def interact_answer(payload: dict[str, Any]) -> dict[str, Any]:
        """What Edge answers: the ECID from the visitor's identity cookie (sent in
        ``meta.state.entries``), else one sent in the request's identity map (a migration from
        a legacy AMCV cookie), else a new one; a visitor without the cookie is given it."""
        entries = payload.get("meta", {}).get("state", {}).get("entries", [])
        cookies = {entry["key"]: entry["value"] for entry in entries}
        handles: list[dict[str, Any]] = []
        if IDENTITY_COOKIE in cookies:
            ecid = ecid_of(cookies[IDENTITY_COOKIE])
        else:
            sent = payload.get("xdm", {}).get("identityMap", {}).get("ECID", [])
            ecid = sent[0]["id"] if sent else new_ecid()
            stored = {"key": IDENTITY_COOKIE, "value": identity_cookie(ecid), "maxAge": IDENTITY_MAX_AGE}
            handles.append({"type": "state:store", "payload": [stored]})
        handles.insert(
            0, {"type": "identity:result", "payload": [{"id": ecid, "namespace": {"code": "ECID"}}]}
        )
        return {"requestId": secrets.token_hex(16), "handle": handles}


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A throw-away certificate and key for the fake Edge (the browser is told to accept it)."""
    cert, key = folder / "edge.pem", folder / "edge.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=edge.example", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key
