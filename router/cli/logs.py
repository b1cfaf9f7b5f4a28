"""The command line's log: on a terminal through rich, on the console the progress bars draw
on, so a log line is printed above a bar instead of through it; plain lines on stderr
otherwise. domicile's own loggers at INFO (``-v`` DEBUG, ``-q`` WARNING), every library's at
WARNING (``-v`` INFO): a line such as botocore's "Found credentials" is not news."""

from __future__ import annotations

import logging

from rich.logging import RichHandler

from domicile.router.cli.console import stderr

#: Loggers whose INFO lines are meant for the operator.
OWN = ("domicile",)

#: The handler installed by the last ``configure``: replaced, not added to, by the next (a
#: process may run several commands, as tests do); other handlers are left alone.
_installed: list[logging.Handler] = []


def configure(verbosity: int) -> None:
    """``verbosity``: -1 quiet, 0 default, 1 and more verbose."""
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
    root.setLevel(logging.INFO if verbosity > 0 else logging.WARNING)
    own = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    for name in OWN:
        logging.getLogger(name).setLevel(own)
    # Per request, and by route template: `serve --access-log` turns it on.
    logging.getLogger("domicile.access").setLevel(logging.WARNING)
