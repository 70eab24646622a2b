"""Every command's --help shows its text as written. Typer renders help with
rich markup, where `[start, end]` is a tag and vanishes ("every tick in  that
has none"): a bracket a help text means literally must be escaped (`\\[`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from orchestrator.cli import app, main

BRACKETS = re.compile(r"(?<!\\)\[[^\]\n]*\]|\\\[[^\]\n]*\]")


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """The command tree (typer 0.29 vendors click: a group is what has `commands`)."""
    yield path, group
    if hasattr(group, "commands"):
        for name, sub in group.commands.items():
            yield from _commands(sub, (*path, name))


def _texts(cmd: Any) -> list[str]:
    texts = [cmd.help or ""]
    texts += [getattr(p, "help", None) or "" for p in cmd.params]
    return texts


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_commands_are_found() -> None:
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"schedule backfill", "start", "steps"} <= paths


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "-")
def test_help_shows_every_bracket_it_was_written_with(path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    cmd = dict(COMMANDS)[path]
    assert main([*path, "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.replace("│", " ").split())
    for text in _texts(cmd):
        for found in BRACKETS.findall(text):
            literal = " ".join(found.removeprefix("\\").split())
            assert literal in shown, f"{' '.join(path)} --help lost {literal!r}"
