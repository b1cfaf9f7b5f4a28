"""The docs' shell walkthroughs, run as they are written: how a doc shows commands and their
output, how this harness reads and runs them, and how it compares what they print.

The convention (docs/architecture.md, "Docs that run", points here)
--------------------------------------------------------------------

Every fenced block tagged ``sh`` (or ``bash``) in README.md and docs/**/*.md is part of its
document's walkthrough. A document's blocks run in order in one bash session, started in an
empty folder (so ``./domicile-data`` is a fresh embedded deployment): what a block sets up
(``export``, an alias, a file, a server started with ``&``) is there for the next one.

- A block stays a script a reader can paste whole: commands, and comments.
- The comment lines right under a command, with no blank line between, are its **output** as
  a terminal shows it (stdout and stderr): ``# `` and the line (``#`` alone: an empty line).
  Every other comment (at the end of a command's line, or after a blank line) is prose.
- Every command must exit 0, unless its shown output ends with ``# (exit status N)``. A command
  whose output is not shown is checked for its exit status only.
- In shown output, a lower-case name in angle brackets (``<hash>``, ``<time>``, ``<pseudonym>``,
  ``<key id>``) stands for one word (no spaces) that differs from run to run; ``…`` stands for
  any text within its line, and a line of its own ``…`` for any number of lines. Everything
  else must match exactly, trailing spaces aside. Use them for what truly varies (times,
  hashes, keys, pseudonyms, counts that depend on timing), not to hide output that is stable.
- The server is ``localhost:8000`` (or ``127.0.0.1:8000``): the harness gives every
  ``domicile serve`` a free port and points those addresses at it, and after a command that
  starts ``domicile serve`` in the background it waits until the server accepts connections.
  Stop it with ``kill $!; wait`` (uvicorn ends by re-raising SIGTERM: ``wait $!`` says 143).
- A block that cannot run here (docker compose, remote hosts) is preceded by
  ``<!-- doctest: skip: the reason -->``; the test suite lists it as skipped, with the reason.
  Any other ``<!-- doctest: … -->``, or one not right before a ``sh`` block, is an error.
- Blocks tagged otherwise (``toml``, ``python``, none) are not run (the client's Python
  examples are run by tests/client/test_docs.py).

The session has a fresh ``$HOME``, ``TZ=UTC``, ``COLUMNS=100``, the venv's ``bin`` first on
``PATH`` (an activated venv) and ``.venv`` linked into its folder, so ``.venv/bin/domicile``
works as in a checkout. It ends by stopping whatever it started in the background.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RUNNABLE = {"sh", "bash"}
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
DIRECTIVE = re.compile(r"^\s*<!--\s*doctest:(?P<text>.*?)-->\s*$")
SKIP = re.compile(r"^\s*skip:\s*(?P<reason>\S.*?)\s*$")
EXIT = re.compile(r"^\(exit status (?P<status>\d+)\)$")
#: ``<name>``: one word; ``…``: any text within a line.
WILDCARD = re.compile(r"<[a-z][a-z0-9 _-]*>|…")
SERVER = re.compile(r"\b(localhost|127\.0\.0\.1):8000\b")
SERVE = re.compile(r"\bdomicile serve\b")
VENV = Path(sys.executable).parent.parent
#: A whole document's session at most, in seconds: a command every few seconds on a loaded
#: machine (each ``domicile`` command starts a Python process), a server that never answers.
SESSION_TIMEOUT = 200


class DocError(ValueError):
    """A doc that breaks the convention: a directive that is not understood or leads nowhere,
    a command that never ends."""


@dataclass(frozen=True)
class Command:
    line: int  # where it starts in the document, 1-based
    text: str  # as written, continuation lines and here-documents included
    shown: tuple[str, ...] | None  # the output the doc shows, without the exit status line
    status: int  # the exit status the doc expects


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence
    lang: str
    body: tuple[str, ...]
    skip: str | None  # why it does not run here

    @property
    def runs(self) -> bool:
        return self.lang in RUNNABLE and self.skip is None

    def commands(self) -> list[Command]:
        return parse_commands(self.body, self.line + 1, self.doc)


def blocks(doc: Path) -> list[Block]:
    """Every fenced block of a markdown document, with its skip directive."""
    found: list[Block] = []
    skip: tuple[int, str] | None = None
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        directive = DIRECTIVE.match(lines[i])
        fence = FENCE.match(lines[i])
        if directive:
            reason = SKIP.match(directive["text"])
            if reason is None:
                raise DocError(f"{doc.name}:{i + 1}: not a doctest directive: {lines[i].strip()}")
            skip = (i + 1, reason["reason"])
        elif fence:
            indent, start = len(fence["indent"]), i
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
                i += 1
            if i == len(lines):
                raise DocError(f"{doc.name}:{start + 1}: the block is never closed")
            if skip is not None and fence["lang"] not in RUNNABLE:
                raise DocError(
                    f"{doc.name}:{skip[0]}: a skip directive before a block that never runs"
                )
            found.append(
                Block(doc, start + 1, fence["lang"], tuple(body), skip[1] if skip else None)
            )
            skip = None
        elif lines[i].strip() and skip is not None:
            raise DocError(
                f"{doc.name}:{skip[0]}: a skip directive must come right before its block"
            )
        i += 1
    return found


def _complete(text: str) -> bool:
    """Whether bash reads ``text`` as whole commands (no open quote, loop, here-document)."""
    checked = subprocess.run(
        ["bash", "-n"], input=text, capture_output=True, text=True, check=False
    )
    return checked.returncode == 0 and "wanted `" not in checked.stderr


def parse_commands(body: tuple[str, ...], first_line: int, doc: Path) -> list[Command]:
    """A block's commands, each with the output shown right under it."""
    commands: list[Command] = []
    i = 0
    while i < len(body):
        if not body[i].strip() or body[i].lstrip().startswith("#"):
            i += 1  # a blank line or prose
            continue
        start = i
        text = body[i]
        while text.endswith("\\") or not _complete(text + "\n"):
            i += 1
            if i == len(body):
                raise DocError(f"{doc.name}:{first_line + start}: the command never ends")
            text += "\n" + body[i]
        i += 1
        shown: list[str] = []
        while i < len(body) and body[i].startswith("#"):
            shown.append(body[i][2:] if body[i].startswith("# ") else body[i][1:])
            i += 1
        status = 0
        if shown and (exit_line := EXIT.match(shown[-1])):
            status = int(exit_line["status"])
            shown.pop()
        commands.append(Command(first_line + start, text, tuple(shown) or None, status))
    return commands


def _pattern(line: str) -> str:
    if line == "…":
        return r"(?:[^\n]*\n)*?"
    parts: list[str] = []
    at = 0
    for wildcard in WILDCARD.finditer(line):
        parts += [re.escape(line[at : wildcard.start()])]
        parts += [r"[^\n]*?" if wildcard[0] == "…" else r"\S+"]
        at = wildcard.end()
    return "".join([*parts, re.escape(line[at:]), r"\n"])


def matches(shown: tuple[str, ...], printed: str) -> bool:
    """Whether ``printed`` is the output ``shown``, placeholders standing for what varies."""
    lines = [line.rstrip() for line in printed.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    pattern = "".join(_pattern(line.rstrip()) for line in shown)
    return re.fullmatch(pattern, "".join(f"{line}\n" for line in lines)) is not None


@dataclass(frozen=True)
class Ran:
    command: Command
    printed: str
    status: int | None  # None: the session ended before it
    waited: bool = True  # False: the server it started never accepted connections

    def problem(self) -> str | None:
        """What differs from the doc, or None."""
        if self.status is None:
            return "did not run: the session ended before it (timeout, or `exit`)"
        if not self.waited:
            return "started a server that never accepted connections"
        if self.status != self.command.status:
            return f"exited {self.status}, the doc expects {self.command.status}"
        if self.command.shown is not None and not matches(self.command.shown, self.printed):
            return "printed other output than the doc shows"
        return None

    def report(self, doc: Path) -> str:
        shown = "\n".join(self.command.shown or ["(nothing shown)"])
        return (
            f"{doc.name}:{self.command.line}: {self.problem()}\n$ {self.command.text}\n"
            f"--- shown:\n{shown}\n--- printed:\n{self.printed.rstrip()}"
        )


def _address(text: str, port: int) -> str:
    return SERVER.sub(lambda m: f"{m[1]}:{port}", text)


def _served(text: str, port: int) -> str:
    return SERVE.sub(f"domicile serve --port {port}", _address(text, port))


def session_script(commands: list[Command], port: int, out: Path) -> str:
    """One bash script: each command's output and exit status in files of ``out``, named by
    its index; after a server started in the background, a wait until it accepts."""
    lines = ["shopt -s expand_aliases"]
    for n, command in enumerate(commands):
        lines += [
            "{ " + _served(command.text, port),
            f"}} > {out}/{n}.out 2>&1",
            f"echo $? > {out}/{n}.status",
        ]
        if SERVE.search(command.text):
            lines += [
                "up=; for _ in $(seq 600); do",
                f"  (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && {{ up=1; break; }}",
                "  kill -0 $! 2>/dev/null || break; sleep 0.1",
                f'done; [ -n "$up" ] || touch {out}/{n}.down',
            ]
    lines += ["kill $(jobs -p) 2>/dev/null", "wait"]
    return "\n".join(lines) + "\n"


def run_session(
    commands: list[Command], folder: Path, port: int, timeout: float = SESSION_TIMEOUT
) -> list[Ran]:
    """Run the commands in one bash session in ``folder``/work, as the convention says."""
    work, home, out = folder / "work", folder / "home", folder / "out"
    for path in (work, home, out):
        path.mkdir(parents=True)
    (work / ".venv").symlink_to(VENV)
    script = folder / "session.sh"
    script.write_text(session_script(commands, port, out))
    env = {
        "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "COLUMNS": "100",
        "TERM": "dumb",
    }
    session = subprocess.Popen(
        ["bash", str(script)],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: what it left running stops with it
    )
    try:
        session.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session.pid, signal.SIGKILL)
        session.wait()
    ran = []
    for n, command in enumerate(commands):
        status = out / f"{n}.status"
        printed = out / f"{n}.out"
        ran.append(
            Ran(
                command,
                printed.read_text(errors="replace") if printed.exists() else "",
                int(status.read_text()) if status.exists() else None,
                waited=not (out / f"{n}.down").exists(),
            )
        )
    return ran


def _substituted(command: Command, port: int) -> Command:
    """The command as run, its shown output with the server's address as printed."""
    shown = None if command.shown is None else tuple(_address(s, port) for s in command.shown)
    return Command(command.line, command.text, shown, command.status)


def run_doc(doc: Path, folder: Path, port: int) -> list[str]:
    """Run every block of ``doc`` that runs here; one report per command that differs."""
    commands = [
        _substituted(c, port) for block in blocks(doc) if block.runs for c in block.commands()
    ]
    return [r.report(doc) for r in run_session(commands, folder, port) if r.problem()]
