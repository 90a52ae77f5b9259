"""The CLI's status line of the runs in flight: one compact line, refreshed in place on a terminal
(every second) and printed every 15 seconds elsewhere (a log file, CI):

    [ray] 2 in flight, 2 waiting, 0/4 done | lora 3/6 loss 2.41 ETA 4s on vm (10.0.0.2) | ia3 loading model on vm
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from typing import Any

from peftlab.store import Store


def describe(run: Any) -> str:
    """One run in flight: its step, loss and ETA while training, else its phase; and its node."""
    pr = run.progress or {}
    node = f" on {pr['node']}" if pr.get("node") else ""
    if pr.get("phase") == "train" and pr.get("step") is not None:
        loss = f" loss {pr['loss']:.3f}" if isinstance(pr.get("loss"), int | float) else ""
        eta = f" ETA {pr['eta_seconds']:.0f}s" if isinstance(pr.get("eta_seconds"), int | float) else ""
        return f"{run.name} {pr['step']}/{pr.get('max_steps', '?')}{loss}{eta}{node}"
    return f"{run.name} {pr.get('phase', 'starting')}{node}"


class StatusLine:
    def __init__(self, echo: Any = print, stream: Any = None, every: float | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = echo is print and bool(getattr(self.stream, "isatty", lambda: False)())
        self.echo = echo
        self.every = every if every is not None else (1.0 if self.tty else 15.0)
        self.last = 0.0
        self.shown = False

    def show(self, store: Store, run_ids: list[int], waiting: set[int], done: int, total: int) -> None:
        if time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        runs = [r for r in (store.run(i) for i in run_ids) if r is not None]
        flying = [r for r in runs if r.id not in waiting]
        text = (f"[ray] {len(flying)} in flight, {len(runs) - len(flying)} waiting, {done}/{total} done"
                + "".join(f" | {describe(r)}" for r in flying))
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns - 1
            self.stream.write("\r\x1b[K" + text[:width])
            self.stream.flush()
            self.shown = True
        else:
            self.echo(text)

    def say(self, message: str) -> None:
        """A message between two refreshes (a retry): on its own line."""
        self.clear()
        self.echo(message)

    def clear(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


# escape sequences: CSI (colours, cursor moves, line erases), OSC (titles, links), and the two-byte ones
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def terminal_lines(text: str) -> list[str]:
    """The lines of a program's output as a terminal shows them: escape sequences (colours, cursor
    moves) dropped, and a carriage return going back to the start of the line, the text after it
    writing over what was there (a progress bar redrawn in place is its last state)."""
    out = []
    for raw in _ESCAPES.sub("", text).split("\n"):
        line = ""
        for part in raw.split("\r"):
            line = part + line[len(part):]
        out.append(line.rstrip())
    return out
