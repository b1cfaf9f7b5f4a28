"""The shell walkthroughs of README.md and docs/*.md run against a fresh deployment and print
what the docs show (the convention is in tests/docs/walkthrough.py); and the harness itself
fails when a doc is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.docs.walkthrough import (
    SESSION_TIMEOUT,
    Block,
    Command,
    DocError,
    blocks,
    matches,
    parse_commands,
    run_doc,
)
from tests.support.ports import free_port

REPO = Path(__file__).parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
#: Programs the walkthroughs use beyond bash and the venv: a doc that needs a missing one skips.
TOOLS = ("curl", "sqlite3")


def _skipped() -> list[Block]:
    return [b for doc in DOCS for b in blocks(doc) if b.skip is not None]


@pytest.mark.docs
@pytest.mark.timeout(SESSION_TIMEOUT + 30)
@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(REPO)))
def test_walkthrough(doc: Path, tmp_path: Path) -> None:
    runnable = [b for b in blocks(doc) if b.runs]
    if not runnable:
        pytest.skip(f"{doc.name} has no shell blocks")
    text = "\n".join(line for b in runnable for line in b.body)
    for tool in TOOLS:
        if f"{tool} " in text and shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed, and {doc.name}'s walkthrough uses it")
    problems = run_doc(doc, tmp_path, free_port())
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("block", _skipped(), ids=lambda b: f"{b.doc.relative_to(REPO)}:{b.line}")
def test_skipped_block(block: Block) -> None:
    """Each block a doc marks as not runnable here, listed with its reason."""
    pytest.skip(f"{block.doc.name}:{block.line}: {block.skip}")


def _commands(text: str) -> list[Command]:
    return parse_commands(tuple(text.splitlines()), 1, Path("doc.md"))


def test_output_is_the_comments_right_under_a_command() -> None:
    [heredoc, loop, continued, quiet] = _commands(
        "# prose\n"
        "cat > a.toml <<'EOF'\n"
        "# a TOML comment, not output\n"
        "EOF\n"
        "for x in a b; do\n"
        "  echo $x\n"
        "done\n"
        "# a\n"
        "# b\n"
        "echo 'one' \\\n"
        "  two   # prose on the command's line\n"
        "# one two\n"
        "# (exit status 0)\n"
        "\n"
        "# prose again, after a blank line\n"
        "true\n"
    )
    assert heredoc.shown is None
    assert heredoc.text.endswith("EOF")
    assert loop.shown == ("a", "b")
    assert continued.line == 10
    assert continued.shown == ("one two",)
    assert quiet.shown is None
    assert quiet.status == 0
    [failing] = _commands("false\n# (exit status 1)")
    assert failing.shown is None
    assert failing.status == 1


def test_placeholders_stand_for_what_varies_only() -> None:
    assert matches(("root <hash>",), "root JYJLrRB0NL=\n")
    assert not matches(("root <hash>",), "root two words\n")
    assert matches(("ok, … entries",), "ok, 4 signed entries")
    assert matches(("first", "…", "last"), "first\nlast\n")
    assert matches(("first", "…", "last"), "first\n2\n3\nlast   \n\n")
    assert not matches(("first", "last"), "first\n2\nlast\n")
    assert not matches(("ru-msk-1: ok, 2 entries",), "ru-msk-1: ok, 4 entries\n")
    assert not matches(("a",), "a\nb\n")  # output past what is shown counts
    assert not matches(("a.b",), "axb")  # no regular expressions


def test_a_doc_with_wrong_output_fails(tmp_path: Path) -> None:
    doc = tmp_path / "wrong.md"
    doc.write_text(
        "```sh\n"
        "export GREETING=hello\n"
        "echo $GREETING\n"
        "# hello\n"
        "```\n\n"
        "```sh\n"
        "echo $GREETING world\n"
        "# goodbye world\n"
        "false\n"
        "curl -s localhost:8000/nowhere\n"
        "# (exit status 7)\n"
        "```\n"
    )
    problems = run_doc(doc, tmp_path / "session", free_port())
    assert [p.splitlines()[0] for p in problems] == [
        "wrong.md:8: printed other output than the doc shows",
        "wrong.md:10: exited 1, the doc expects 0",
    ]
    assert "--- printed:\nhello world" in problems[0]


def test_a_server_that_never_answers_fails(tmp_path: Path) -> None:
    doc = tmp_path / "serve.md"
    doc.write_text(
        "```sh\n"
        'domicile() { echo "domicile: cannot start: $*"; return 2; }  # in place of the CLI\n'
        "domicile serve &\n"
        "curl -s localhost:8000\n"
        "```\n"
    )
    port = free_port()
    [server, client] = run_doc(doc, tmp_path / "session", port)
    assert server.startswith("serve.md:3: started a server that never accepted connections")
    assert f"domicile: cannot start: serve --port {port}" in server
    assert client.startswith("serve.md:4: exited 7")  # curl: could not connect


def test_skip_directives_name_a_reason_and_their_block(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- doctest: skip: needs docker -->\n```sh\ndocker ps\n```\n")
    [block] = blocks(doc)
    assert block.skip == "needs docker"
    assert not block.runs
    for wrong in (
        "<!-- doctest: skip -->\n```sh\n```\n",
        "<!-- doctest: skip: why -->\ntext\n```sh\n```\n",
        "<!-- doctest: skip: why -->\n```toml\n```\n",
    ):
        doc.write_text(wrong)
        with pytest.raises(DocError):
            blocks(doc)
