"""A local Telegram Bot API server (https://core.telegram.org/bots/api) on 127.0.0.1 for
`stairway bot`'s tests: the real python-telegram-bot client talks to it over HTTP with its
base URL pointed here. Requests are ``POST /bot<token>/<method>`` with the parameters as form
fields (python-telegram-bot JSON-encodes non-string values); every answer is the API's
envelope ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": ...}``.

Emulated: getMe, deleteWebhook, getUpdates (long polling: ``offset`` acknowledges, ``timeout``
seconds waited for an update, answered at once when one arrives), sendMessage (kept in
``sent``), close/logOut; a wrong token gets 401 Unauthorized, an unknown method 404.
``say(chat_id, text)`` queues an incoming message as a user in that chat would send it.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

BOT_ID = 7_000_000_001


class TelegramApi:
    def __init__(self, token: str = "7000000001:AAtest-token") -> None:
        self.token = token
        self.updates: list[dict] = []
        self.sent: list[dict] = []  # sendMessage calls: {"chat_id", "text"}
        self.calls: list[str] = []
        self._next_update = 1
        self._message_ids = 1
        self._arrived = asyncio.Event()
        self._sent = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._dispatch)
        app.router.add_get("/bot{token}/{method}", self._dispatch)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/bot"
        return self.base_url

    async def stop(self) -> None:
        self._arrived.set()  # a long poll in progress answers now
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the user's side ----------------------------------------------------------------------
    def say(self, chat_id: int, text: str) -> None:
        """A message from user ``chat_id`` in their private chat with the bot."""
        entities = (
            [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}] if text.startswith("/") else []
        )
        self.updates.append(
            {
                "update_id": self._next_update,
                "message": {
                    "message_id": self._message_ids,
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "private", "first_name": "op"},
                    "from": {"id": chat_id, "is_bot": False, "first_name": "op"},
                    "text": text,
                    "entities": entities,
                },
            }
        )
        self._next_update += 1
        self._message_ids += 1
        self._arrived.set()

    async def replies(self, chat_id: int, n: int, timeout: float = 20.0) -> list[str]:
        """Wait (on the server's own event, bounded) until ``n`` messages were sent to the chat."""

        async def enough() -> list[str]:
            while True:
                got = [m["text"] for m in self.sent if m["chat_id"] == chat_id]
                if len(got) >= n:
                    return got
                self._sent.clear()
                await self._sent.wait()

        return await asyncio.wait_for(enough(), timeout)

    # -- the API ------------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.calls.append(method)
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        params = await self._params(request)
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found: method not found"}, status=404
            )
        return web.json_response({"ok": True, "result": await handler(params)})

    @staticmethod
    async def _params(request: web.Request) -> dict:
        if request.content_type == "application/json":
            return await request.json()
        out = {}
        for k, v in (await request.post()).items():
            try:
                out[k] = json.loads(v) if isinstance(v, str) else v
            except ValueError:
                out[k] = v
        return out

    async def _api_getMe(self, p: dict) -> dict:  # noqa: N802 - the API's method name
        return {"id": BOT_ID, "is_bot": True, "first_name": "Stairway", "username": "stairway_test_bot",
                "can_join_groups": False, "can_read_all_group_messages": False, "supports_inline_queries": False}  # fmt: skip

    async def _api_deleteWebhook(self, p: dict) -> bool:  # noqa: N802
        return True

    async def _api_close(self, p: dict) -> bool:
        return True

    async def _api_getUpdates(self, p: dict) -> list[dict]:  # noqa: N802
        offset = int(p.get("offset") or 0)
        self.updates = [u for u in self.updates if u["update_id"] >= offset]  # acknowledged ones are gone
        if not self.updates:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), float(p.get("timeout") or 0))
            except TimeoutError:
                pass
        return [u for u in self.updates if u["update_id"] >= offset][: int(p.get("limit") or 100)]

    async def _api_sendMessage(self, p: dict) -> dict:  # noqa: N802
        chat_id, text = int(p["chat_id"]), str(p["text"])
        self.sent.append({"chat_id": chat_id, "text": text})
        self._sent.set()
        self._message_ids += 1
        return {"message_id": self._message_ids, "date": int(time.time()), "text": text,
                "chat": {"id": chat_id, "type": "private", "first_name": "op"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Stairway"}}  # fmt: skip
