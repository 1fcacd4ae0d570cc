"""`stairway bot`: remote control over Telegram (issue 22 §7), a process of its own so the
daemon's attack surface does not grow. It holds no broker credentials: it acts only through
the daemon's control files (as `stairway ctl` does) and reads the daemon's /status, its
database (trades, P&L) and the model registry.

Commands: /status, /trades, /pnl, /models, /stop (observe only), /start, /flatten [SYMBOL]
(answered with a code; nothing happens until /confirm CODE within ``bot.confirm_secs``), /help.
Only chats in ``bot.allowed_chat_ids`` are obeyed; anything from another chat is ignored (no
reply) and counted. A chat sending more than ``bot.max_commands_per_minute`` is told once and
then ignored until the minute has passed. Every command obeyed is recorded in gate.db's
operator_actions (``bot_<command>``, with the chat id and the text).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from stairway.core.errors import ConfigError
from stairway.core.redaction import redact

log = structlog.get_logger()

HELP = (
    "/status - the daemon's state\n/trades - the last closed trades\n/pnl - P&L per day\n"
    "/models - the running models\n/stop - observe only (positions kept)\n/start - may open positions\n"
    "/flatten [SYMBOL] - close everything (or one instrument), after /confirm CODE"
)


@dataclass
class BotStats:
    obeyed: int = 0
    unknown_senders: int = 0  # messages from chats not allowed: ignored
    flooded: int = 0  # commands over the per-minute limit: ignored
    recent: dict[int, deque] = field(default_factory=dict)  # chat -> times of its last commands
    told: set[int] = field(default_factory=set)  # chats told they are over the limit this minute


class Commands:
    """The bot's behaviour, without Telegram: ``handle(chat_id, text)`` returns the reply (None:
    stay silent). ``clock`` (seconds) is injectable for the confirmation and flood windows."""

    def __init__(self, cfg, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.clock = cfg, clock
        self.allowed = frozenset(cfg.bot.allowed_chat_ids)
        self.symbols = [leg.symbol for leg in cfg.legs(look_on_disk=False)]
        self.pending: dict[int, tuple[str, str | None, float]] = {}  # chat -> (code, instrument, expires)
        self.stats = BotStats()

    # -- gatekeeping ------------------------------------------------------------------------
    def handle(self, chat_id: int, text: str) -> str | None:
        if chat_id not in self.allowed:
            self.stats.unknown_senders += 1
            log.warning("bot_unknown_sender", chat_id=chat_id, ignored=self.stats.unknown_senders)
            return None
        now = self.clock()
        q = self.stats.recent.setdefault(chat_id, deque())
        while q and now - q[0] >= 60.0:
            q.popleft()
        if len(q) >= self.cfg.bot.max_commands_per_minute:
            self.stats.flooded += 1
            if chat_id in self.stats.told:
                return None
            self.stats.told.add(chat_id)
            return f"too many commands: at most {self.cfg.bot.max_commands_per_minute} a minute; ignoring you for now"
        q.append(now)
        self.stats.told.discard(chat_id)
        words = text.strip().split()
        if not words or not words[0].startswith("/"):
            return "commands start with /; " + HELP.replace("\n", "; ")
        cmd = words[0][1:].split("@")[0].lower()  # /status@stairway_bot in a group
        method = getattr(self, f"cmd_{cmd}", None)
        if method is None:
            return f"unknown command /{cmd}\n{HELP}"
        try:
            reply = method(chat_id, words[1:])
        except Exception as e:  # noqa: BLE001 - a command that fails answers with why; the bot goes on
            log.error("bot_command_failed", command=cmd, error=str(e)[:300])
            reply = f"/{cmd} failed: {redact(str(e))}"  # never a secret in a chat
        self.stats.obeyed += 1
        self._record(f"bot_{cmd}", f"chat {chat_id}: {text.strip()[:200]}")
        return reply

    def _record(self, action: str, reason: str) -> None:
        from stairway.trainer.gatedb import GateDB

        try:
            db = GateDB(self.cfg.service.gate_db)
            try:
                db.operator_action(action, None, reason)
            finally:
                db.close()
        except Exception as e:  # noqa: BLE001 - never lose the reply for the record; say so in the log
            log.error("bot_record_failed", action=action, gate_db=str(self.cfg.service.gate_db), error=str(e)[:200])

    # -- commands ---------------------------------------------------------------------------
    def cmd_help(self, chat_id: int, args: list[str]) -> str:
        return HELP

    def cmd_start(self, chat_id: int, args: list[str]) -> str:
        from stairway.daemon.control import ctl

        return ctl(self.cfg.service.control_dir, "start")

    def cmd_stop(self, chat_id: int, args: list[str]) -> str:
        from stairway.daemon.control import ctl

        return ctl(self.cfg.service.control_dir, "stop")

    def cmd_flatten(self, chat_id: int, args: list[str]) -> str:
        inst = args[0].upper() if args else None
        if inst is not None and inst not in self.symbols:
            return f"{inst} is not traded here ({', '.join(self.symbols)})"
        code = f"{secrets.randbelow(10**6):06d}"
        self.pending[chat_id] = (code, inst, self.clock() + self.cfg.bot.confirm_secs)
        what = inst or "EVERY position"
        return f"close {what}? send /confirm {code} within {self.cfg.bot.confirm_secs:g} s"

    def cmd_confirm(self, chat_id: int, args: list[str]) -> str:
        from stairway.daemon.control import ctl

        code, inst, expires = self.pending.pop(chat_id, ("", None, 0.0))
        if not code:
            return "nothing to confirm: send /flatten first"
        if self.clock() > expires:
            return "too late: that /flatten expired; send /flatten again"
        if not args or args[0] != code:
            return "wrong code: nothing done; send /flatten again"
        one = inst if self.cfg.portfolio is not None else None  # one instrument: its FLATTEN is the global one
        return ctl(self.cfg.service.control_dir, "flatten", None, one)

    def cmd_status(self, chat_id: int, args: list[str]) -> str:
        snap, why = self._status()
        if snap is None:
            from stairway.daemon.control import daemon_status

            last = daemon_status(self.cfg.service.status_file)
            return f"daemon not answering: {why}\n{last['daemon_state']}"
        lines = [
            f"run {snap.get('run_id', '?')}: " + ("HALTED" if snap.get("halted") else "running"),
            f"trading enabled: {'yes' if snap.get('trading_enabled') else 'no (observe only)'}",
            f"equity {snap.get('equity', 0.0):,.2f}, drawdown {snap.get('drawdown_pct', 0.0):.2f} %",
        ]
        for inst, p in (snap.get("instruments") or {}).items():
            lines.append(
                f"{inst}: {p.get('position_units', 0.0):+,.0f} units, model {str(p.get('model_sha', ''))[:12]}, "
                f"last bar {p.get('last_bar', '-')}"
            )
        for inst, sha in (snap.get("pending_swaps") or {}).items():
            lines.append(f"{inst}: model {sha[:12]} verified, swapped in at the next bar")
        health = snap.get("health") or []
        lines.append("health: " + ("ok" if not health else "; ".join(health)))
        return "\n".join(lines)

    def _status(self) -> tuple[dict | None, str]:
        port = self.cfg.service.http_port
        if not port:
            return None, "service.http_port is off: no /status to read"
        url = f"http://127.0.0.1:{port}/status"
        try:
            with urllib.request.urlopen(url, timeout=3.0) as r:  # noqa: S310 - a fixed local URL
                return json.loads(r.read()), ""
        except (urllib.error.URLError, OSError, ValueError) as e:
            return None, f"{url}: {getattr(e, 'reason', e)}"

    def cmd_trades(self, chat_id: int, args: list[str]) -> str:
        from stairway.trades_cli import listing

        doc = listing(self.cfg.service.db_path)
        trades = doc["trades"][-5:]
        if not trades:
            return f"run {doc['run_id']}: no closed trades"
        return f"run {doc['run_id']}, last {len(trades)} closed trades:\n" + "\n".join(
            f"{t['closed'][:16]} {t['instrument']} {t['units']:+,.0f} P&L {t['pnl']:+,.2f}" for t in trades
        )

    def cmd_pnl(self, chat_id: int, args: list[str]) -> str:
        from stairway.trades_cli import listing

        doc = listing(self.cfg.service.db_path)
        days = list(doc["per_day"].items())[-7:]
        total = sum(v["pnl"] for v in doc["per_day"].values())
        return f"run {doc['run_id']}: closed-trade P&L {total:+,.2f}\n" + "\n".join(
            f"{d}: {v['pnl']:+,.2f} ({v['trades']} trades)" for d, v in days
        )

    def cmd_models(self, chat_id: int, args: list[str]) -> str:
        from stairway.core.checkpoint import read_checkpoint

        out = []
        for leg in self.cfg.legs():
            for link in ("current", "gold"):
                p = leg.models_dir / link
                try:
                    ck = read_checkpoint(p)
                    out.append(
                        f"{leg.symbol} {link}: {ck.sha[:12]} ({ck.meta.policy_kind}, created {ck.meta.created_at})"
                    )
                except Exception as e:  # noqa: BLE001 - a missing or bad link is reported, not fatal
                    out.append(f"{leg.symbol} {link}: none ({str(e)[:120]})")
        return "\n".join(out)


def build_application(cfg, token: str, commands: Commands):
    """A python-telegram-bot Application that hands every text message to ``commands`` and
    sends its reply back to that chat."""
    from telegram import Update
    from telegram.ext import Application, ContextTypes, MessageHandler, filters

    async def on_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg = update.effective_message
        if msg is None or update.effective_chat is None or msg.text is None:
            return
        reply = await asyncio.to_thread(commands.handle, update.effective_chat.id, msg.text)
        if reply:
            await context.bot.send_message(update.effective_chat.id, reply[:4000])

    app = Application.builder().token(token).base_url(cfg.bot.base_url).build()
    app.add_handler(MessageHandler(filters.TEXT, on_message))
    return app


def bot_token(cfg, environ: dict[str, str]) -> str:
    name = cfg.bot.token_env
    token = environ.get(name, "").strip()
    if not token:
        raise ConfigError(f"environment variable {name} (bot.token_env): not set; the bot's token from @BotFather")
    if not cfg.bot.allowed_chat_ids:
        raise ConfigError("bot.allowed_chat_ids is empty: nobody could command the bot; add your chat id")
    return token


def add_parser(sub, default_config) -> None:
    b = sub.add_parser("bot", help="Telegram remote control (control files and /status only; no broker access)")
    b.add_argument("--config", default=default_config("config/paper.toml"), help="the daemon's config ([bot])")
    b.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from stairway.core.config import load_config
    from stairway.core.logs import configure_logging
    from stairway.daemon.config import DaemonConfig

    cfg = load_config(DaemonConfig, args.config)
    token = bot_token(cfg, dict(os.environ))
    configure_logging(json=cfg.service.log_json)
    app = build_application(cfg, token, Commands(cfg))
    log.info("bot_started", allowed_chats=len(cfg.bot.allowed_chat_ids), control_dir=str(cfg.service.control_dir))
    app.run_polling(allowed_updates=["message"])
    return 0
