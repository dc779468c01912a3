"""What every command's arguments are checked with: a parser that answers a mistake in one line, argparse
types for numbers with a lower bound and for names from a fixed list, and `decoupling demo`'s options.
The command modules (`cli`, `demo`, `gain_cli`) import this one; it imports none of them."""
from __future__ import annotations

import argparse

from decoupling import data

# The demo fine-tunes a language model: its targets are the text tasks (not the digits).
DEMO_TARGETS = tuple(t for t in data.TASKS if not t.startswith("digits/"))


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake answered in one line (what is wrong, the valid values, where the help is)
    instead of the usage block, and exit status 2 as argparse does."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def one_of(kind: str, valid):
    """An argparse type accepting only `valid` names; the error lists them."""
    valid = tuple(valid)

    def check(value: str) -> str:
        if value not in valid:
            raise argparse.ArgumentTypeError(f"unknown {kind} {value!r}; valid {kind}s: {', '.join(valid)}")
        return value
    check.__name__ = kind  # argparse names the type in some messages
    return check


def at_least(low, cast=int, strict: bool = False):
    """An argparse type for a number >= low (> low when strict)."""
    what = "a whole number" if cast is int else "a number"

    def check(value: str):
        try:
            x = cast(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}") from None
        if not (x > low if strict else x >= low):  # written so that nan is refused too
            raise argparse.ArgumentTypeError(f"{value} is out of range: it must be "
                                             f"{'greater than' if strict else 'at least'} {low}")
        return x
    check.__name__ = cast.__name__
    return check


def demo_parser(description: str | None = None) -> argparse.ArgumentParser:
    """`decoupling demo`'s options (decoupling.demo parses its arguments with this)."""
    p = Parser(prog="decoupling demo", description=description,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="sentiment/movies", type=one_of("task", DEMO_TARGETS),
                   help="a text task: " + ", ".join(DEMO_TARGETS) + " (default sentiment/movies)")
    p.add_argument("--source", default="code", type=one_of("source", data.DOMAINS),
                   help="pretraining domain: " + ", ".join(data.DOMAINS) + " (default code)")
    p.add_argument("--seeds", type=at_least(1), default=3, help="fine-tuning seeds, at least 1 (default 3)")
    return p
