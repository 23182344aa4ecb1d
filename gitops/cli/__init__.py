"""The command line: thin commands that parse, call the library and render. Each command's
module is imported when it runs (``gitops.cli.commands``)."""

from gitops.cli.app import cli, main

__all__ = ["cli", "main"]
