"""The command line's log: on a terminal through rich, on the console the progress bars draw
on, so a log line is printed above a bar instead of through it; plain lines on stderr
otherwise. Quiet by default: warnings and errors only, every library's included (botocore's
"Found credentials" is not news); ``-v`` adds domicile's INFO lines, ``-vv`` its DEBUG lines and
the libraries' INFO; ``-q`` keeps errors only. ``serve`` logs domicile's INFO lines (it is the
application log)."""

from __future__ import annotations

import logging

from rich.logging import RichHandler

from domicile.router.cli.console import stderr

#: Loggers whose INFO lines are meant for the operator.
OWN = "domicile"

#: The handler installed by the last ``configure``: replaced, not added to, by the next (a
#: process may run several commands, as tests do); other handlers are left alone.
_installed: list[logging.Handler] = []


def configure(verbosity: int) -> None:
    """``verbosity``: -1 quiet, 0 default, 1 verbose, 2 and more debug."""
    handler: logging.Handler
    if stderr.is_terminal:
        handler = RichHandler(console=stderr, show_path=False, markup=False, log_time_format="%X")
        handler.setFormatter(logging.Formatter("%(name)s %(message)s"))  # time, level: rich's
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for previous in _installed:
        root.removeHandler(previous)
    _installed[:] = [handler]
    root.addHandler(handler)
    own = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    root.setLevel(logging.INFO if verbosity > 1 else max(own, logging.WARNING))
    logging.getLogger(OWN).setLevel(own)
    # Per request, and by route template: `serve --access-log` turns it on.
    logging.getLogger(f"{OWN}.access").setLevel(logging.WARNING)


def application_log() -> None:
    """A server's own log: domicile's INFO lines, unless the command line asked for less or
    more."""
    own = logging.getLogger(OWN)
    if own.level == logging.WARNING:
        own.setLevel(logging.INFO)
