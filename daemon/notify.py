"""sd_notify without libsystemd: datagrams to $NOTIFY_SOCKET (READY, RELOADING, WATCHDOG, STOPPING)."""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = ("\0" + addr[1:]) if addr.startswith("@") else addr
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if self.address else None
        if self.sock is not None:
            self.sock.setblocking(False)  # never block the event loop: a lost ping beats a frozen daemon
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_secs = int(usec) / 1e6 if usec and usec.isdigit() else None

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, *fields: str) -> bool:
        if self.sock is None:
            return False
        try:
            self.sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError:  # BlockingIOError when the receiver is not reading
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        """A reload began (SIGHUP); READY=1 ends it. systemd wants the monotonic clock with it."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
