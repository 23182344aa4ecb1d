"""Who runs this process, as the log records it: the actor of what an operator does by hand
(a read of the log, a change of the Git source's settings)."""

from __future__ import annotations

import getpass
import os
import socket

__all__ = ["host", "os_user"]


def os_user() -> str:
    """The OS user's name, or ``uid:N`` when the uid has none (a container without an
    /etc/passwd entry): the uid is still evidence, a made-up name would not be."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def host() -> str:
    return socket.gethostname()
