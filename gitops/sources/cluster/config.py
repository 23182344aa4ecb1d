"""What to read from the cluster, and how."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gitops.model.control_plane import CONTROL_PLANE_USERS, CONTROLLER_MANAGERS
from gitops.model.errors import ConfigError

if TYPE_CHECKING:
    import ssl

__all__ = ["DEFAULT_NOISY_KINDS", "TOKEN_ENV", "AuditWebhookSettings", "ClusterSourceConfig", "kind_syntax_problem"]

TOKEN_ENV = "GITOPS_AUDIT_WEBHOOK_TOKEN"

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*\Z")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_GROUP = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


def kind_syntax_problem(text: str) -> str | None:
    """Why ``text`` is not ``Kind[.group]`` (or a resource name as kubectl takes it, such as
    ``deployments.apps`` or ``deploy``), or None."""
    if text == "*":
        return None
    name, dot, group = text.partition(".")
    if not name:
        return f"kind {text!r} is empty before the group" if dot else "a kind may not be empty"
    if not _NAME.match(name):
        return f"kind {text!r}: {name!r} is not a kind (letters and digits, e.g. Deployment.apps or deploy)"
    if dot and not _GROUP.match(group):
        return f"kind {text!r}: {group!r} is not an API group (e.g. Deployment.apps, Ingress.networking.k8s.io)"
    return None

DEFAULT_NOISY_KINDS = [
    "Node", "Endpoints", "Event", "Lease.coordination.k8s.io", "EndpointSlice.discovery.k8s.io",
]


class AuditWebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(description="host:port to serve the audit webhook on (e.g. 0.0.0.0:8443)")
    cert_file: str = Field(description="the receiver's TLS certificate (PEM), which the API server's webhook "
                                       "kubeconfig trusts")
    key_file: str = Field(description="the receiver's TLS private key (PEM)")
    client_ca_file: str | None = Field(default=None, description="accept client certificates this CA signed "
                                                                 "(the API server's; often the cluster's CA)")
    token_file: str | None = Field(default=None, description="accept this bearer token (a file holding it; or "
                                                             f"${TOKEN_ENV})")
    max_body_bytes: int = Field(default=32 << 20, gt=0, description="the largest batch accepted (bytes)")
    delay: float = Field(default=2.0, ge=0, description="seconds the API server may hold a record before posting "
                                                        "it (its --audit-webhook-batch-max-wait): a change waits "
                                                        "this much longer for its record")

    def host_port(self) -> tuple[str, int]:
        host, sep, port = self.address.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(f"audit webhook address {self.address!r} is not host:port (e.g. 0.0.0.0:8443)")
        return host.strip("[]") or "0.0.0.0", int(port)

    def token(self) -> bytes | None:
        if self.token_file is not None:
            try:
                text = Path(self.token_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"cannot read the audit webhook's token file {self.token_file}: "
                                  f"{getattr(e, 'strerror', None) or e}") from None
            if not text:
                raise ConfigError(f"the audit webhook's token file {self.token_file} is empty")
            return text.encode()
        env = os.environ.get(TOKEN_ENV, "").strip()
        return env.encode() if env else None

    def tls(self) -> ssl.SSLContext:
        """The server's TLS context, checked now: a file that cannot be used is one line."""
        import ssl  # here: every command reads this config, few serve TLS

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"cannot use the audit webhook's certificate {self.cert_file} and key "
                              f"{self.key_file}: {getattr(e, 'strerror', None) or e}") from None
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(self.client_ca_file)
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(f"cannot use the audit webhook's client CA {self.client_ca_file}: "
                                  f"{getattr(e, 'strerror', None) or e}") from None
            ctx.verify_mode = ssl.CERT_OPTIONAL  # a client with a token needs no certificate
        return ctx

    def check(self) -> tuple[ssl.SSLContext, bytes | None]:
        """Every setting usable, and someone authenticates: a receiver that would take
        records from anyone would let anyone write the audit trail. Returns what it checked:
        the TLS context and the token (None: client certificates only)."""
        self.host_port()
        tls, token = self.tls(), self.token()
        if self.client_ca_file is None and token is None:
            raise ConfigError("the audit webhook must authenticate the API server: give a client CA "
                              f"(client_ca_file) or a bearer token (token_file, or ${TOKEN_ENV})")
        return tls, token


class ClusterSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$", max_length=253,
        description="this cluster's name in the log: its events' origin is cluster:NAME, and --cluster NAME picks it "
                    "out where one log holds many clusters (default: the API server's URL)")
    kubeconfig: str | None = Field(default=None, description="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    context: str | None = Field(default=None, description="kubeconfig context (default: its current context)")
    kinds: list[str] = Field(
        default_factory=list,
        description="kinds to watch besides those in the desired state and Namespaces, as Kind[.group]; "
                    "'*' watches every listable kind",
    )
    namespaces: list[str] = Field(
        default_factory=list,
        description="watch namespaced kinds in these namespaces only (a list and a watch each), and reconcile "
                    "nothing outside them: what a reconciler granted Roles in these namespaces alone can do "
                    "(gitops deploy rbac); empty: every namespace")
    noisy_kinds: list[str] = Field(default_factory=lambda: list(DEFAULT_NOISY_KINDS),
                                   description="kinds whose status-only updates are not recorded")
    audit_log: str | None = Field(default=None, description="the API server's audit log file, to name real users")
    audit_log_later: bool = Field(default=False, description="the audit log may not exist yet: read it once it "
                                                             "appears (its folder must exist)")
    audit_webhook: AuditWebhookSettings | None = Field(
        default=None, description="serve the API server's audit webhook backend, to name real users where its "
                                  "audit log file cannot be read (in a cluster)")
    field_manager: str = Field(default="gitops", description="the reconciler's field manager")
    control_plane_managers: list[str] = Field(
        default_factory=lambda: list(CONTROLLER_MANAGERS),
        description="field managers whose changes are the control plane's, not out-of-band (diff.ignore_managers "
                    "are added to them)")
    control_plane_users: list[str] = Field(
        default_factory=lambda: list(CONTROL_PLANE_USERS),
        description="audited users (globs) whose changes are the control plane's, not out-of-band")
    audit_wait: float = Field(default=0.5, ge=0,
                              description="seconds a change waits for its audit record (and so a pass for the "
                                          "watch to record what it applied)")
    watch_timeout: int = Field(default=300, gt=0, description="seconds before the server ends and we renew a watch")
    backoff_initial: float = Field(default=0.5, gt=0, description="first reconnect delay (seconds)")
    backoff_max: float = Field(default=30.0, gt=0, description="largest reconnect delay (seconds)")
    discovery_retry: float = Field(default=60.0, gt=0, description="seconds between discoveries while an API "
                                                                   "group does not answer")

    @field_validator("namespaces")
    @classmethod
    def _namespace_names(cls, namespaces: list[str]) -> list[str]:
        for n in namespaces:
            if not _DNS_LABEL.match(n):
                raise ValueError(f"namespace {n!r} is not a namespace name (lower-case letters, digits and '-')")
        return namespaces

    @field_validator("kinds")
    @classmethod
    def _kind_names(cls, kinds: list[str]) -> list[str]:
        for k in kinds:
            why = kind_syntax_problem(k)
            if why is not None:
                raise ValueError(why)
        return kinds
