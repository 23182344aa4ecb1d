"""Proving the log to someone who does not trust its writer: keys, signed checkpoints,
where they are published, and checks of the log against them.

- **Keys** (``KeyStore``): an Ed25519 signer (``signing.key``, mode 0600, or the environment
  variable ``GITOPS_SIGNING_KEY``), its verifier (``signing.pub``, or
  ``GITOPS_VERIFIER_KEY``) and the key of Secret digests (``digest.key``, or
  ``GITOPS_DIGEST_KEY``), all in a directory outside the database.
- **Checkpoints** (``make_checkpoint``): the log's Merkle root and size, and its chain head,
  signed (``gitops.model.note``), published to a directory and to a Git ref, and recorded in
  the log (``integrity.checkpoint``).
- **Checks**: ``check_against`` recomputes the chain and the root of the first ``size``
  events and compares it with a checkpoint's: a cut tail, a rewrite (even with the chain
  recomputed) and a fork all show. ``prove`` gives an event with its inclusion proof and
  the checkpoint, and ``verify_proof`` checks it with the public key alone.
"""

from __future__ import annotations

import base64
import os
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gitops.events.models import EventSource, IntegrityCheckpoint, IntegrityCheckpointPayload, event_id
from gitops.events.redaction import RedactionRule, key_id
from gitops.model.errors import CheckpointMovedError, ConfigError, ProofError, TamperedLogError, UsageError
from gitops.model.identity import os_user
from gitops.model.merkle import leaf_hash, verify_inclusion
from gitops.model.note import Checkpoint as SignedCheckpoint
from gitops.model.note import NoteError, Signer, Verifier, open_checkpoint, parse_checkpoint, sign_checkpoint
from gitops.model.times import utc_now
from gitops.query.integrity_settings import CheckpointEvery, GitPublish, IntegritySettings
from gitops.store import Checkpoint, EventLog, VerifyResult
from gitops.store.chain import FIELDS, row_hash

__all__ = [
    "CHECKPOINT_FILE",
    "CheckpointEvery",
    "GitPublish",
    "IntegritySettings",
    "Judgement",
    "KeyStore",
    "check_against",
    "latest_checkpoint",
    "log_origin",
    "make_checkpoint",
    "prove",
    "verify_proof",
]

CHECKPOINT_FILE = "checkpoint"
_LATEST = "integrity:checkpoint"
_ORIGIN = "integrity:origin"
PROOF_FORMAT = "gitops-inclusion-proof/1"


class KeyStore:
    """The keys of one log, in ``directory`` (default: ``<db>.keys`` beside the database)."""

    def __init__(self, directory: str | Path | None = None, *, db: Path | None = None) -> None:
        if directory:
            self.dir = Path(directory).expanduser()
        elif db is not None:
            self.dir = db.with_name(db.name + ".keys")
        else:
            self.dir = Path("gitops.db.keys")
        self.signing_path = self.dir / "signing.key"
        self.verifier_path = self.dir / "signing.pub"
        self.digest_path = self.dir / "digest.key"

    def init(self, name: str) -> Verifier:
        """Make the signing keys (and the digest key, when the log has none yet); refuses to
        replace any (a lost key would orphan every checkpoint)."""
        there = [p for p in (self.signing_path, self.verifier_path) if p.exists()]
        if there:
            raise UsageError(f"{there[0]} exists: keys are never replaced (move them away first)")
        try:
            signer = Signer.generate(name)
        except NoteError as e:
            raise UsageError(str(e)) from None
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.signing_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(str(signer) + "\n")
        self.verifier_path.write_text(str(signer.verifier) + "\n")
        self.digest_key(create=True)
        return signer.verifier

    def _secret(self, path: Path, env: str) -> str | None:
        if os.environ.get(env):
            return os.environ[env]
        if not path.exists():
            return None
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{path} is readable by others (mode {stat.S_IMODE(mode):o}): chmod 600 it")
        return path.read_text().strip()

    def signer(self) -> Signer:
        text = self._secret(self.signing_path, "GITOPS_SIGNING_KEY")
        if text is None:
            raise ConfigError(f"no signing key in {self.dir} (nor GITOPS_SIGNING_KEY): run 'gitops keys init'")
        try:
            return Signer.parse(text)
        except NoteError as e:
            raise ConfigError(f"the signing key: {e}") from None

    def verifier(self, given: str | None = None) -> Verifier:
        """The verifier key: ``given`` (a key or a file holding one), else the environment's,
        else the key directory's."""
        text = given or os.environ.get("GITOPS_VERIFIER_KEY")
        if text and Path(text).expanduser().is_file():
            text = Path(text).expanduser().read_text()
        if not text and self.verifier_path.exists():
            text = self.verifier_path.read_text()
        if not text:
            raise ConfigError(f"no verifier key: give --key, set GITOPS_VERIFIER_KEY, or run 'gitops keys init' "
                              f"({self.verifier_path})")
        try:
            return Verifier.parse(text.strip())
        except NoteError as e:
            raise ConfigError(f"the verifier key: {e}") from None

    def digest_key(self, *, create: bool = False) -> bytes | None:
        """The key of Secret digests; with ``create``, made (0600) the first time a log is
        written, so that no value is ever stored under a plain, guessable digest."""
        text = self._secret(self.digest_path, "GITOPS_DIGEST_KEY")
        if text is None and create:
            # written whole under a name of its own, then linked into place: a process that
            # starts meanwhile finds either no key or the whole key, never an empty file
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            part = self.digest_path.with_name(f".{self.digest_path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
            try:
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(os.urandom(32).hex() + "\n")
                os.link(part, self.digest_path)
            except FileExistsError:  # made meanwhile by another process: use that one
                pass
            except OSError as e:
                raise ConfigError(f"cannot make the digest key {self.digest_path}: {e.strerror}") from None
            finally:
                part.unlink(missing_ok=True)
            text = self._secret(self.digest_path, "GITOPS_DIGEST_KEY")
        if text is None:
            return None
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise ConfigError(f"the digest key ({self.digest_path} or GITOPS_DIGEST_KEY) is not hex") from None
        if len(key) < 16:
            raise ConfigError("the digest key is shorter than 16 bytes")
        return key


_DIGEST_KEY = "integrity:digest-key"


def check_digest_key(log: EventLog, key: bytes) -> None:
    """Hold every writer of one log (many clusters on PostgreSQL) to one digest key: the log
    records the id of the first writer's key, and a writer with another key is refused.
    Two keys would give one Secret two digests, which never compare equal: each
    reconciler would find Git's Secret differing from its cluster's on every pass."""
    mine = key_id(key)
    recorded = log.checkpoint(_DIGEST_KEY) or log.claim(_DIGEST_KEY, {"id": mine})  # the first writer's key
    theirs = recorded.get("id") if isinstance(recorded, dict) else None
    if theirs != mine:
        raise ConfigError(f"this log's Secret digests are keyed by digest key {theirs}, and this gitops has key "
                          f"{mine}: every writer of one log must share its digest key (GITOPS_DIGEST_KEY, or the "
                          "digest.key file of the first writer's key directory)")


_REDACT = "integrity:redact"


def log_redaction_rules(log: EventLog, configured: Sequence[RedactionRule]) -> tuple[RedactionRule, ...]:
    """The redaction rules every writer of ``log`` applies: those the log recorded, then the
    ``configured`` ones it did not (which it records). A rule once
    in a log stays: a command run without the config file that added it (a one-shot
    ``gitops ingest``, ``reconcile``, ``rollback``) would otherwise store in clear, in a log
    that can never forget, what every other writer digests; and the Git source would read
    its last commit again each time the two alternate."""
    for _ in range(5):
        value = log.checkpoint(_REDACT)
        try:
            recorded = [RedactionRule.model_validate(r) for r in value] if isinstance(value, list) else []
        except ValidationError as e:
            raise ConfigError(f"the log's redaction rules ({_REDACT}) are damaged: {e.errors()[0]['msg']}") from None
        rules = [*recorded, *(r for r in dict.fromkeys(configured) if r not in recorded)]
        if len(rules) == len(recorded):
            return tuple(rules)
        try:  # on condition that no other writer recorded rules meanwhile; else read them again
            log.append([], checkpoint=Checkpoint(_REDACT, [r.model_dump(mode="json") for r in rules]),
                       expect=Checkpoint(_REDACT, value))
        except CheckpointMovedError:
            continue
        return tuple(rules)
    raise ConfigError("the log's redaction rules kept changing under this command: run it again")


def log_origin(log: EventLog, settings: IntegritySettings) -> str:
    """The log's name in its checkpoints: configured, or an id given to it once."""
    if settings.origin:
        return settings.origin
    value = log.checkpoint(_ORIGIN)
    if isinstance(value, dict) and isinstance(value.get("origin"), str):
        return str(value["origin"])
    origin = f"gitops.log/{uuid.uuid4().hex}"
    log.append([], checkpoint=Checkpoint(_ORIGIN, {"origin": origin}))
    return origin


def latest_checkpoint(log: EventLog) -> str | None:
    value = log.checkpoint(_LATEST)
    return str(value["text"]) if isinstance(value, dict) and isinstance(value.get("text"), str) else None


def make_checkpoint(log: EventLog, signer: Signer, settings: IntegritySettings, *,
                    cache_dir: Path | None = None) -> tuple[SignedCheckpoint, list[str]]:
    """Sign the log's head, publish it where the settings say, and record it: the signed
    checkpoint and where it went."""
    from gitops.sources.git.publish import publish_file

    size, root, head = log.tree_head()
    if size == 0:
        raise UsageError("the log holds no events yet: there is nothing to sign")
    cp = sign_checkpoint(SignedCheckpoint(log_origin(log, settings), size, root, head), signer)
    d = Path(settings.publish_dir).expanduser() if settings.publish_dir else None
    if d is not None and (d / CHECKPOINT_FILE).exists():
        _check_extends(log, cp, str(d / CHECKPOINT_FILE), (d / CHECKPOINT_FILE).read_text(), signer.verifier)
    published: list[str] = []
    if settings.publish_git is not None:  # checked by the fetch that publishes: one round trip
        g = settings.publish_git
        where = f"git:{g.repo}#{g.ref}"

        def extends(prev: str | None) -> None:
            if prev is not None:
                _check_extends(log, cp, where, prev, signer.verifier)

        sha = publish_file(g.repo, g.ref, CHECKPOINT_FILE, cp.text, f"gitops checkpoint {cp.origin} at {size}",
                           cache_dir=cache_dir, check=extends)
        published.append(f"{where}@{sha[:12]}")
    if d is not None:
        try:
            (d / "checkpoints").mkdir(parents=True, exist_ok=True)
            (d / "checkpoints" / str(size)).write_text(cp.text)
            tmp = d / f".{CHECKPOINT_FILE}.{os.getpid()}"
            tmp.write_text(cp.text)
            tmp.replace(d / CHECKPOINT_FILE)
        except OSError as e:
            raise ConfigError(f"cannot publish the checkpoint to integrity.publish_dir {d}: {e.strerror}") from None
        published.insert(0, str(d / CHECKPOINT_FILE))
    v = signer.verifier
    log.append([IntegrityCheckpoint(
        id=event_id("integrity.checkpoint", cp.origin, str(size), cp.text), source=EventSource.OPERATOR,
        actor=os_user(), effective_at=utc_now(),
        payload=IntegrityCheckpointPayload(origin=cp.origin, size=size, root=base64.b64encode(root).decode(),
                                           key=f"{v.name}+{v.key_id.hex()}", published=published))],
        checkpoint=Checkpoint(_LATEST, {"text": cp.text}))
    return cp, published


def _check_extends(log: EventLog, cp: SignedCheckpoint, where: str, prev_text: str, verifier: Verifier) -> None:
    """Refuse to publish ``cp`` where the last checkpoint published (``prev_text``, at
    ``where``) is not a prefix of it: a log cut back or rewritten since, or a fork (a copy
    of the log that went its own way), is caught when it tries to publish, by the tree's
    root at the earlier size (O(log n))."""
    try:
        prev = open_checkpoint(prev_text, verifier)
    except NoteError as e:
        raise TamperedLogError(f"refusing to publish: the checkpoint at {where} does not open with this "
                               f"log's key ({e}); publish each log to a place of its own") from None
    if prev.origin != cp.origin:
        raise TamperedLogError(f"refusing to publish: {where} holds checkpoints of {prev.origin}, not of "
                               f"{cp.origin}; publish each log to a place of its own")
    if prev.size > cp.size or log.tree().root(prev.size) != prev.root:
        raise TamperedLogError(f"refusing to publish: the log ({cp.size} events) does not extend the "
                               f"checkpoint of {prev.size} events at {where}: it was cut back or rewritten "
                               "since, or it is a fork; 'gitops verify --checkpoint' says which events")


@dataclass(frozen=True)
class Judgement:
    ok: bool
    message: str


def check_against(log: EventLog, cp: SignedCheckpoint, result: VerifyResult | None = None) -> Judgement:
    """Whether the log extends ``cp`` (a checkpoint whose signature was checked): the chain
    and the Merkle root of its first ``cp.size`` events recomputed from the rows (``result``:
    a ``log.verify(at_sizes={cp.size})`` made already)."""
    result = result if result is not None else log.verify(at_sizes={cp.size})
    if result.checked < cp.size:
        where = f"the log holds {result.checked} intact events"
        why = "" if result.ok else f" (its chain breaks at seq {result.first_bad_seq}: {result.reason})"
        return Judgement(False, f"{where}{why}, fewer than the {cp.size} the checkpoint signed: events were cut "
                                "off or changed")
    root = result.roots.get(cp.size)
    if root != cp.root:
        return Judgement(False, f"the log's first {cp.size} events are not the ones the checkpoint signed (their "
                                "Merkle root differs): the log was rewritten, or is a fork")
    if cp.head is not None:
        row = log.row(cp.head[0])
        if row is None or row["hash"] != cp.head[1]:
            return Judgement(False, f"event seq {cp.head[0]} is not the chain head the checkpoint signed")
    if not result.ok:
        return Judgement(False, f"the log extends the checkpoint of {cp.size} events, but its chain breaks after it: "
                                f"{result.describe()}")
    return Judgement(True, f"consistent: the log ({result.checked} events) extends the checkpoint of {cp.size} "
                           f"events signed for {cp.origin}")


def prove(log: EventLog, seq: int, checkpoint_text: str | None = None) -> dict[str, Any]:
    """Event ``seq`` with its inclusion proof against the latest checkpoint (or the one given)."""
    text = checkpoint_text or latest_checkpoint(log)
    if text is None:
        raise UsageError("the log has no checkpoint yet: run 'gitops checkpoint' first")
    cp = parse_checkpoint(text)
    if not 0 < seq <= cp.size:
        raise UsageError(f"seq {seq} is not covered by the checkpoint (it signs seq 1..{cp.size})")
    row = log.row(seq)
    if row is None:
        raise UsageError(f"the log has no event seq {seq}")
    proof = log.tree().inclusion(seq - 1, cp.size)
    return {"format": PROOF_FORMAT, "checkpoint": text, "seq": seq, "tree_size": cp.size,
            "event": row, "proof": [base64.b64encode(p).decode() for p in proof]}


def verify_proof(doc: Any, verifier: Verifier) -> str:
    """Check a ``prove`` document with the public key alone (no database): the checkpoint's
    signature, the event's own hash, and its inclusion under the signed root. A line saying
    what it proves; ``ProofError`` saying what does not hold."""
    try:
        if not isinstance(doc, dict) or doc.get("format") != PROOF_FORMAT:
            raise ProofError(f"not a {PROOF_FORMAT} document")
        cp = open_checkpoint(str(doc["checkpoint"]), verifier)
        row, seq = doc["event"], int(doc["seq"])
        own = row_hash(str(row["prev_hash"]), [row[f] for f in FIELDS])
        if own != row["hash"]:
            raise ProofError("the event's fields do not match its hash: it was changed")
        proof = [base64.b64decode(p, validate=True) for p in doc["proof"]]
        if int(doc["tree_size"]) != cp.size or int(row["seq"]) != seq:
            raise ProofError("the proof's sizes do not match its checkpoint")
    except NoteError as e:
        raise ProofError(f"the checkpoint: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise ProofError(f"not a valid proof document ({type(e).__name__}: {e})") from None
    if not verify_inclusion(seq - 1, cp.size, leaf_hash(bytes.fromhex(own)), proof, cp.root):
        raise ProofError(f"the inclusion proof does not hold: event seq {seq} is not in the log the checkpoint "
                         "signed")
    return (f"event seq {seq} ({row['type']}{' ' + row['resource'] if row.get('resource') else ''}) is in "
            f"{cp.origin} as signed at {cp.size} events by {verifier.name}")
