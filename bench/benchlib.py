"""The command-line setup the bench helpers share (bench/provision/bench.py and
bench/rotation/bench.py): a parser described by the first paragraph of the helper's docstring,
one required subcommand, each subcommand running its own function.

Standard library only, like the helpers that import it.
"""

import argparse


def command(sub, name, f):
    """Adds subcommand `name` to `sub`, run by `f` (called with the parsed arguments)."""
    s = sub.add_parser(name)
    s.set_defaults(f=f)
    return s


def main(doc, add_commands):
    """Parses the command line with the subcommands `add_commands(sub)` adds (through
    `command`) and runs the chosen one; `doc` is the helper's docstring."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_commands(p.add_subparsers(dest="cmd", required=True))
    a = p.parse_args()
    a.f(a)
