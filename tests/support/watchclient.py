"""A watcher connection for tests: sends ``watch`` first, records every frame, answers pings."""

from __future__ import annotations

from typing import Any

from wsclient import Connection, Msg, token


class Watcher(Connection):
    def __init__(self, url: str, user: str, answer_pings: bool = True, **token_kw: Any) -> None:
        super().__init__(url, token(user, **token_kw), answer_pings)
        self.user = user

    def __str__(self) -> str:
        return f"watcher of {self.user}"

    async def connect(self, workspaces: list[str], **extra: Any) -> Watcher:
        await self.open({"type": "watch", "token": self.token, "workspaces": workspaces, **extra})
        return self

    async def watch(self, workspaces: list[str], rid: str) -> Msg:
        await self.send({"type": "watch", "workspaces": workspaces, "id": rid})
        return await self.expect("leases", lambda m: m.get("id") == rid)
