"""Progress bars of the long CLI commands (train, snapshot, lookalike): tqdm on stderr, on a terminal only."""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar:24}| {n_fmt}/{total_fmt} [{elapsed}]{postfix}"


class Bar:
    """One bar on stderr, like "train shop:  44%|██████ | 4/9 [00:22], propensity". Pipelines report to it
    through `step` (steps done, of total, what runs now) or `fraction` (share done, what runs now); both do
    nothing when the bar is not shown."""

    def __init__(self, desc: str, total: int, enabled: bool | None = None) -> None:
        # enabled None: shown when stderr is a terminal (tqdm's disable=None), so logs, CI and tests stay clean
        self.tqdm = tqdm(total=total, desc=desc, file=sys.stderr, leave=False, bar_format=BAR_FORMAT,
                         disable=None if enabled is None else not enabled)

    @property
    def shown(self) -> bool:
        return not self.tqdm.disable

    def step(self, done: int, total: int, what: str) -> None:
        """`done` of `total` steps finished; `what` runs now."""
        if not self.shown:
            return
        self.tqdm.total = total
        self.tqdm.n = min(done, total)
        self.tqdm.set_postfix_str(what, refresh=False)
        self.tqdm.refresh()

    def fraction(self, fraction: float, what: str) -> None:
        """`fraction` (0..1) of the work done; `what` runs now."""
        total = int(self.tqdm.total or 100)
        self.step(round(max(0.0, min(1.0, fraction)) * total), total, what)


@contextlib.contextmanager
def progress_bar(desc: str, total: int, enabled: bool | None = None) -> Iterator[Bar]:
    """A Bar for the length of a `with` block. While it is shown, log lines are written above it; it is
    erased when the block ends, so that what the command prints next (the metrics table) never shares a
    line with it."""
    bar = Bar(desc, total, enabled)
    try:
        with logging_redirect_tqdm() if bar.shown else contextlib.nullcontext():
            yield bar
    finally:
        bar.tqdm.close()
