"""Issue 22 §7: `stairway bot`, Telegram remote control in a process of its own, end to end: the
real python-telegram-bot client polls a local Bot API server (tests/emulators/telegram_api.py)
and answers through it, against a running paper daemon's /status and control files, and
with the daemon down. Only allow-listed chats are obeyed; every command is recorded."""

from __future__ import annotations

import asyncio
import sqlite3

from stairway.bot import Commands, build_application
from stairway.cli import main as cli_main
from stairway.daemon.app import Daemon
from stairway.daemon.control import FLATTEN, START
from tests.emulators.telegram_api import TelegramApi
from tests.helpers import paced_config, tiny_checkpoint
from tests.integration.test_service import until

ME, STRANGER = 111, 999


def with_bot(cfg, api: TelegramApi, **bot):
    settings = {"allowed_chat_ids": (ME,), "base_url": api.base_url, **bot}
    return cfg.model_copy(update={"bot": cfg.bot.model_copy(update=settings)})


class Chat:
    """The operator's side of the conversation: say something, wait for the bot's answer."""

    def __init__(self, api: TelegramApi, chat_id: int = ME) -> None:
        self.api, self.chat_id, self.seen = api, chat_id, 0

    async def ask(self, text: str) -> str:
        self.api.say(self.chat_id, text)
        got = await self.api.replies(self.chat_id, self.seen + 1)
        self.seen = len(got)
        return got[-1]


async def polling(cfg, api: TelegramApi, commands: Commands):
    app = build_application(cfg, api.token, commands)
    await app.initialize()
    await app.updater.start_polling(poll_interval=0.0, timeout=1)
    await app.start()
    return app


async def stop(app) -> None:
    await app.updater.stop()
    await app.stop()
    await app.shutdown()


def actions(cfg) -> list[str]:
    with sqlite3.connect(cfg.service.gate_db) as c:
        return [r[0] for r in c.execute("SELECT action FROM operator_actions ORDER BY id")]


def test_commands_against_a_running_daemon(tmp_path, spec):
    ck = tiny_checkpoint(tmp_path / "models", spec, seed=1)[0]
    cfg, _ = paced_config(tmp_path, n_bars=2000, speed=200, batch_ticks=4, http_port=0, model_poll_secs=0.05)

    async def go():
        api = TelegramApi()
        await api.start()
        d = Daemon(cfg)
        task = asyncio.create_task(d.run())
        await until(lambda: d.setup_done and d.http_port)
        live = with_bot(cfg, api).model_copy(
            update={"service": cfg.service.model_copy(update={"http_port": d.http_port})}
        )
        commands = Commands(live)
        app = await polling(live, api, commands)
        me = Chat(api)
        try:
            status = await me.ask("/status")
            api.say(STRANGER, "/flatten")  # not allowed: ignored, counted, never answered
            stopped = await me.ask("/stop")
            start_gone = not (cfg.service.control_dir / START).exists()
            started = await me.ask("/start")
            start_back = (cfg.service.control_dir / START).exists()
            asked = await me.ask("/flatten")
            wrong = await me.ask("/confirm 000000" if "000000" not in asked else "/confirm 999999")
            no_flatten = not (cfg.service.control_dir / FLATTEN).exists()
            code = (await me.ask("/flatten")).split("/confirm ")[1].split()[0]
            done = await me.ask(f"/confirm {code}")
            await until(
                lambda: (
                    d.slot.counters.risk_events.get("flatten", 0) or not (cfg.service.control_dir / FLATTEN).exists()
                )
            )
            models = await me.ask("/models")
            # issue 22 §4: a verified model waiting for the next bar (here: for the features to warm up)
            newer = (await asyncio.to_thread(tiny_checkpoint, tmp_path / "models", spec, seed=2))[0]
            await until(lambda: d.slot.swap.pending is not None)
            pending = await me.ask("/status")
            assert f"EUR_USD: model {newer.sha[:12]} verified, swapped in at the next bar" in pending
            assert f"model {ck.sha[:12]}" in pending  # still trading the one before
        finally:
            await stop(app)
            d.stop.set()
            await task
            await api.stop()
        return status, stopped, start_gone, started, start_back, asked, wrong, no_flatten, done, models, commands, api

    status, stopped, start_gone, started, start_back, asked, wrong, no_flatten, done, models, commands, api = (
        asyncio.run(go())
    )
    assert f"run {status.split()[1]}" in status and "trading enabled: yes" in status and "EUR_USD:" in status
    assert "observe only" in stopped and start_gone
    assert "may open positions" in started and start_back
    assert "send /confirm" in asked and "wrong code: nothing done" in wrong and no_flatten
    assert "FLATTEN written" in done
    assert f"EUR_USD current: {ck.sha[:12]} (ppo, created " in models and "EUR_USD gold: none" in models
    assert [m for m in api.sent if m["chat_id"] == STRANGER] == [] and commands.stats.unknown_senders == 1
    assert actions(cfg) == [
        "bot_status", "bot_stop", "bot_start", "bot_flatten", "bot_confirm", "bot_flatten", "bot_confirm", "bot_models",
        "bot_status",
    ]  # fmt: skip


def test_daemon_down_a_flood_and_bad_input(tmp_path):
    """No daemon: /status says so in one reply; /trades says there is no database. Five commands
    in a minute with a limit of 3: three answers, one "too many", then silence; a minute later
    it answers again (an injected clock). Anything that is not a command gets the help."""
    cfg, _ = paced_config(tmp_path, n_bars=300, http_port=1)  # port 1: nobody listens there
    now = [1000.0]

    async def go():
        api = TelegramApi()
        await api.start()
        bot_cfg = with_bot(cfg, api, max_commands_per_minute=3)
        app = await polling(bot_cfg, api, Commands(bot_cfg, clock=lambda: now[0]))
        me = Chat(api)
        try:
            down = await me.ask("/status")
            trades = await me.ask("/trades")
            chat = await me.ask("hello")
            for _ in range(3):
                api.say(ME, "/help")
            await api.replies(ME, 4)
            flood = list(api.sent)
            now[0] += 61.0
            me.seen = len([m for m in api.sent if m["chat_id"] == ME])
            again = await me.ask("/help")
        finally:
            await stop(app)
            await api.stop()
        return down, trades, chat, flood, again

    down, trades, chat, flood, again = asyncio.run(go())
    assert down.startswith("daemon not answering: http://127.0.0.1:1/status")
    assert "/trades failed" in trades and "no daemon database here" in trades
    assert chat.startswith("commands start with /")
    texts = [m["text"] for m in flood]
    assert texts[3].startswith("too many commands: at most 3 a minute") and len(texts) == 4
    assert again.startswith("/status - ")


def test_bot_refuses_to_start_without_token_or_allowed_chats(tmp_path, monkeypatch, capsys):
    _, path = paced_config(tmp_path, n_bars=300)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    assert cli_main(["bot", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "TELEGRAM_BOT_TOKEN" in err and err.count("\n") == 0
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "1:x")
    assert cli_main(["bot", "--config", str(path)]) == 2
    assert "bot.allowed_chat_ids is empty" in capsys.readouterr().err
    monkeypatch.setenv("STAIRWAY_BOT__ALLOWED_CHAT_IDS", "[1, 'x']")
    assert cli_main(["bot", "--config", str(path)]) == 2
    assert "STAIRWAY_BOT__ALLOWED_CHAT_IDS" in capsys.readouterr().err
