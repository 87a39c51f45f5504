"""What every benchmark script shares: the machine's load (printed beside each table) and the error boundary.

Benchmarks are scripts (`python benchmarks/NAME.py ...`), so this folder is on sys.path and they import it as
`from _common import load_avg, run_main`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def load_avg() -> str:
    """The 1 / 5 / 15 minute load averages, for the note beside a timing table (this machine is shared)."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def run_main(main: Callable[[], None]) -> None:
    """Run a benchmark's main(); a user error (a missing run, bad data) is one line `error: ...`, exit 2.

    The same boundary as the CLI's (`outfitrec.cli.user_error_message`); anything else keeps its traceback.
    """
    from outfitrec.cli import user_error_message

    try:
        main()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        message = user_error_message(exc)
        if message is None:
            raise
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        sys.exit(2)
