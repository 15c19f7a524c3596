"""The one progress printer of the experiments: ``[bench 12:34:56] message`` lines on stdout.

Long runs say what they do as they go, flushed at once, so a student watching `make bench` (or a
test reading its output) sees each step when it starts and ends.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Progress:
    tag: str  # "bench", "sweep", "chaos", ...

    def __call__(self, message: str) -> None:
        """A timestamped line: ``[tag HH:MM:SS] message``."""
        print(f"[{self.tag} {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)

    def note(self, message: str, *, error: bool = False) -> None:
        """An untimed line, ``[tag] message``: warnings and outcomes; on stderr with ``error``."""
        print(f"[{self.tag}] {message}", file=sys.stderr if error else sys.stdout, flush=True)
