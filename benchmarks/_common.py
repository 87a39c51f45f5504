"""What every benchmark script shares: the machine's load (printed beside each table) and the error boundary.

Benchmarks are scripts (`python benchmarks/NAME.py ...`), so this folder is on sys.path and they import it as
`from _common import load_avg, run_main`.
"""

from __future__ import annotations

import os
from collections.abc import Callable


def load_avg() -> str:
    """The 1 / 5 / 15 minute load averages, for the note beside a timing table (this machine is shared)."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def run_main(main: Callable[[], None]) -> None:
    """Run a benchmark's main() inside the CLI's error boundary (`outfitrec.cli.error_boundary`): a user error
    (a missing run, bad data) is one line `error: ...`, exit 2; anything else keeps its traceback."""
    from outfitrec.cli import error_boundary

    with error_boundary():
        main()
