"""`/updates/{release}/`: the wheelhouses made by `selfcheck central wheelhouse build`, served
read only to the stations, which install from here with pip --no-index --find-links.

No login: a station has no operator's password, and nothing here is secret (the project's
own wheels and public dependencies). What makes it safe is the pinning: the `update` command
(sent over the broker, which authenticates every station and operator) carries the sha256 of
the release's requirements.lock, the station refuses a lock with any other hash, and pip
--require-hashes refuses any wheel the lock does not name by hash. Someone on the LAN who
swaps a file here gets an install that fails, not one that runs their code.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

# A release folder and the files in it: plain names only, never a path (no "..", no "/",
# nothing hidden).
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$")
SERVED = (".whl", ".lock", ".json")


def routes(root: Path) -> list[Route]:
    root = root.resolve()

    def _release(request: Request) -> Path | None:
        name = request.path_params["release"]
        folder = root / name
        return folder if NAME.match(name) and folder.is_dir() else None

    async def index(request: Request) -> Response:
        """The release's files as links: what pip --find-links reads from an HTTP URL."""
        folder = _release(request)
        if folder is None:
            return PlainTextResponse("no such release\n", status_code=404)
        links = "".join(f'<a href="{html.escape(f.name)}">{html.escape(f.name)}</a><br>\n'
                        for f in sorted(folder.iterdir())
                        if f.is_file() and NAME.match(f.name) and f.name.endswith(SERVED))
        return HTMLResponse(f"<!doctype html><html><body>\n{links}</body></html>\n",
                            headers={"cache-control": "no-cache"})

    async def file(request: Request) -> Response:
        folder = _release(request)
        name = request.path_params["name"]
        if folder is None or not NAME.match(name) or not name.endswith(SERVED):
            return PlainTextResponse("not found\n", status_code=404)
        path = folder / name
        if not path.is_file():
            return PlainTextResponse("not found\n", status_code=404)
        return FileResponse(path, media_type="application/octet-stream")

    return [Route("/updates/{release}/", index), Route("/updates/{release}/{name}", file)]


def releases(root: Path) -> list[dict[str, str]]:
    """The releases an operator may send, newest folder first: what `release.json` says of
    each (the page fills the `update` command's arguments from it)."""
    import json

    out: list[dict[str, str]] = []
    folders = [f for f in root.iterdir() if f.is_dir() and NAME.match(f.name)] \
        if root.is_dir() else []
    for folder in sorted(folders, key=lambda f: f.stat().st_mtime, reverse=True):
        try:
            meta = json.loads((folder / "release.json").read_text(encoding="utf-8"))
            sha = str(meta["lock_sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a finished release: nothing to send
        if re.fullmatch(r"[0-9a-f]{64}", sha):
            out.append({"release": folder.name, "version": str(meta.get("version", "")),
                        "sha256": sha})
    return out
