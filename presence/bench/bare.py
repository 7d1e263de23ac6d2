"""The baselines' server: the same uvicorn + Starlette stack as ``presence serve``, doing nothing else.

- ``/echo`` sends every text frame back: with one redis-py script call, the floor of an acquire.
- ``/ws`` answers the first frame (a tab's ``hello``) with a small ``welcome`` and then pings every
  connected socket once per heartbeat, ignoring what comes back: the floor of an idle tab.

Run as ``python -m presence.bench.bare --port P --heartbeat-ms H``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..http.stack import uvicorn_config
from .procs import raise_fd_limit


def create_app(heartbeat_ms: int) -> Starlette:
    sockets: set[WebSocket] = set()

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await websocket.receive_text()  # the hello
            await websocket.send_text('{"type":"welcome"}')
            sockets.add(websocket)
            while True:
                await websocket.receive_text()  # pongs
        except WebSocketDisconnect:
            pass
        finally:
            sockets.discard(websocket)

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.send_text(await websocket.receive_text())

    async def pinger() -> None:
        n = 0
        while True:
            await asyncio.sleep(heartbeat_ms / 1000)
            n += 1
            msg = f'{{"type":"ping","n":{n}}}'
            for websocket in list(sockets):
                try:
                    await websocket.send_text(msg)
                except Exception:  # closed meanwhile
                    sockets.discard(websocket)

    async def healthz(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(pinger())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return Starlette(
        routes=[WebSocketRoute("/ws", ws), WebSocketRoute("/echo", echo), Route("/healthz", healthz)],
        lifespan=lifespan,
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m presence.bench.bare")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--heartbeat-ms", type=int, default=5000)
    args = parser.parse_args()
    raise_fd_limit()
    uvicorn.Server(uvicorn_config(create_app(args.heartbeat_ms), "127.0.0.1", args.port, 16 * 1024)).run()


if __name__ == "__main__":
    main()
