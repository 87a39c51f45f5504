"""The `outfitrec` command line: a thin layer over the library.

Each sub-module registers its commands on the one Typer app. `main` is the
one error boundary: every user error (bad data, config or checkpoint, a file
system that refuses a write, an unknown user, a diverged training run) is
reported as one line `error: ...` on stderr with exit code 2. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer (pinned) vendors its own click

from outfitrec.cli import baseline as baseline_cli
from outfitrec.cli import data as data_cli
from outfitrec.cli import demo as demo_cli
from outfitrec.cli import experiment as experiment_cli
from outfitrec.cli import features as features_cli
from outfitrec.cli import recommend as recommend_cli
from outfitrec.cli import train as train_cli
from outfitrec.cli import users as users_cli
from outfitrec.data.outfits import DataError

app = typer.Typer(
    help="Personalized outfit recommendation: data, training, distillation, serving.", no_args_is_help=True
)


@app.command()
def version() -> None:
    """Print the outfitrec version."""
    from outfitrec import __version__

    print(__version__)


for module in (data_cli, features_cli, train_cli, experiment_cli, recommend_cli, users_cli, demo_cli, baseline_cli):
    module.register(app)


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message of a user error, or None for an unexpected exception (a bug: keep the traceback).

    User errors: DataError and its subclasses (ConfigError, CheckpointError),
    the file system's refusals (OSError: read-only folder, a file where a
    folder is expected, a full disk...), an unknown user or item (NotFound), a
    non-finite training loss (FloatingPointError) and non-finite scores.
    """
    from outfitrec.evaluate.metrics import NonFiniteScores
    from outfitrec.recommend.engine import NotFound

    if isinstance(exc, (DataError, FloatingPointError, NonFiniteScores)):
        return str(exc)
    if isinstance(exc, NotFound):
        return str(exc).strip("'\"")
    if isinstance(exc, OSError):
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        what = exc.strerror or str(exc) or type(exc).__name__
        return f"{where}: {what}" if where else what
    return None


def usage_error_line(exc: ClickException) -> str:
    """One line for a command-line usage error (bad option value, unknown option, missing argument)."""
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "outfitrec"
    return f"{path}: {' '.join(exc.format_message().split())} (see '{path} --help')"


@contextmanager
def error_boundary() -> Iterator[None]:
    """User errors inside end as one line `error: ...` on stderr, exit code 2; Ctrl-C as `error: interrupted`, 130.

    Anything else is a bug and keeps its traceback. The CLI's `main` and the benchmark scripts run inside it.
    """
    try:
        yield
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        message = user_error_message(exc)
        if message is None:
            raise
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """Run the CLI; user errors (usage errors included) end as one line `error: ...` on stderr, exit code 2."""
    with error_boundary():
        try:
            code = app(standalone_mode=False)  # usage errors come back as exceptions, not as a boxed message
        except NoArgsIsHelpError as exc:  # `outfitrec` or a group alone: its help, as before
            exc.show()
            sys.exit(exc.exit_code)
        except ClickException as exc:
            print(f"error: {usage_error_line(exc)}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except typer.Abort:
            print("error: aborted", file=sys.stderr)
            sys.exit(1)
    # as in typer's standalone mode, always end by SystemExit (typer.Exit(code) comes back as its code)
    sys.exit(code if isinstance(code, int) else 0)
