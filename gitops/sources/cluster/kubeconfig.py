"""Which kubeconfig a cluster client uses, checked before pykube reads it: inside a pod,
the pod's service account; elsewhere the file named, ``$KUBECONFIG`` or ``~/.kube/config``,
whose faults are one line saying what is wrong, not a traceback from deep inside."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from gitops.model.errors import ConfigError

__all__ = ["SERVICE_ACCOUNT", "TokenFile", "check_kubeconfig", "in_cluster", "pod_namespace", "service_account_dir"]

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where a pod is given its service account's token, the cluster's CA and its namespace."""


def service_account_dir() -> Path:
    """``SERVICE_ACCOUNT``, or where ``GITOPS_SERVICE_ACCOUNT_DIR`` says (a token projected
    elsewhere; tests point it at the local control plane's files)."""
    return Path(os.environ.get("GITOPS_SERVICE_ACCOUNT_DIR") or SERVICE_ACCOUNT)


def pod_namespace() -> str | None:
    """The namespace of the pod this process runs in (its service account's), if it runs in one."""
    try:
        return (service_account_dir() / "namespace").read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def in_cluster(kubeconfig: str | Path | None) -> bool:
    """Whether to use the pod's service account (the standard in-cluster config): no
    kubeconfig named or at its default place, and the API server's address
    (``KUBERNETES_SERVICE_HOST``) and the token a pod is given are there."""
    return (kubeconfig is None and not os.environ.get("KUBECONFIG") and not Path("~/.kube/config").expanduser().exists()
            and bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (service_account_dir() / "token").exists())


def check_kubeconfig(kubeconfig: str | Path | None, context: str | None) -> Path:
    """The kubeconfig file to use, checked as far as pykube needs it, so that a bad one is
    one line saying what is wrong (``ConfigError``), not a traceback from deep inside."""
    name = str(kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config")
    path = Path(name).expanduser()

    def bad(why: str) -> ConfigError:
        return ConfigError(f"cannot use kubeconfig {name}: {why}")

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise bad("no such file") from None
    except IsADirectoryError:
        raise bad("it is a directory") from None
    except UnicodeDecodeError:
        raise bad("not a text file") from None
    except OSError as e:
        raise bad(e.strerror or str(e)) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise bad(f"invalid YAML{f' at line {mark.line + 1}' if mark is not None else ''}") from None
    if not isinstance(doc, dict):
        raise bad("not a kubeconfig (expected a mapping with clusters, users and contexts)")
    entries: dict[str, dict[str, Any]] = {}
    for section, inner in (("clusters", "cluster"), ("contexts", "context")):
        items = doc.get(section)
        if not isinstance(items, list) or not items:
            raise bad(f"it names no {section}")
        found = {str(i.get("name")): i.get(inner) for i in items if isinstance(i, dict)}
        if not all(isinstance(v, dict) for v in found.values()):
            raise bad(f"an entry of {section} has no {inner} mapping")
        entries[section] = found
    chosen = context or doc.get("current-context")
    if not chosen:
        raise bad("no context given and no current-context set")
    if chosen not in entries["contexts"]:
        raise bad(f"no context {chosen!r} (it has: {', '.join(sorted(entries['contexts']))})")
    cluster = entries["contexts"][chosen].get("cluster")
    if cluster not in entries["clusters"] or not entries["clusters"][cluster].get("server"):
        raise bad(f"context {chosen!r} names cluster {cluster!r}, which it does not define with a server")
    return path


class TokenFile(requests.auth.AuthBase):
    """A bearer token read from a file, read again when the file changes (at most every
    ``every`` seconds): a pod's service account token is rotated by the kubelet, and one
    read at start would be refused once it expires."""

    def __init__(self, path: Path, *, every: float = 10.0) -> None:
        self.path, self.every = path, every
        self._lock = threading.Lock()
        self._token = ""
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")

    def token(self) -> str:
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= self.every:
                self._checked = now
                try:
                    st = self.path.stat()  # through the kubelet's symlinks: the new file's own stamp
                    stamp = (st.st_mtime_ns, st.st_ino)
                    if stamp != self._stamp:
                        self._token, self._stamp = self.path.read_text(encoding="utf-8").strip(), stamp
                except OSError:
                    pass  # keep the last token: the request says whether it still works
            return self._token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token()}"
        return r
