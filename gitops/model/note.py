"""Signed checkpoints, in the formats transparency logs use (C2SP ``signed-note`` and
``tlog-checkpoint``), so that a root of the log's Merkle tree can be published where its
writer cannot rewrite it, and checked by anyone who holds the public key.

A checkpoint's text::

    gitops.log/5f0c...              the log's origin (its identity)
    18211                           tree size: the number of events it covers
    X3rUIQ8c...=                    base64 of the Merkle root (gitops.model.merkle)
    gitops-head 18211 9f1c...       extension: the hash chain's head at that size

then a blank line and one signature line per signer: ``— <key name> <base64(key id ||
Ed25519 signature)>``, the key id being the first four bytes of SHA-256(name, 0x0A, 0x01,
public key). Keys are written as ``signed-note`` writes them: the verifier key
``<name>+<id hex>+<base64(0x01 || public key)>``, the signer key
``PRIVATE+KEY+<name>+<id hex>+<base64(0x01 || seed)>`` (Ed25519 from ``cryptography``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["HEAD_EXTENSION", "Checkpoint", "NoteError", "Signer", "Verifier", "open_checkpoint", "parse_checkpoint",
           "sign_checkpoint"]

_ED25519 = b"\x01"
_DASH = "\u2014 "
HEAD_EXTENSION = "gitops-head"


class NoteError(ValueError):
    """A key or a signed checkpoint that cannot be read, or whose signature does not hold."""


def _key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


def _check_name(name: str) -> str:
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"a key name must be non-empty, with no '+' and no spaces: {name!r}")
    return name


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not base64") from None


@dataclass(frozen=True)
class Verifier:
    name: str
    public: bytes

    @property
    def key_id(self) -> bytes:
        return _key_id(self.name, self.public)

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(_ED25519 + self.public).decode()}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        parts = text.strip().split("+", 2)  # the base64 key may hold "+" itself
        if len(parts) != 3:
            raise NoteError("a verifier key is <name>+<id>+<base64 key>")
        name, key_id, key = _check_name(parts[0]), parts[1], _b64(parts[2], "the verifier key")
        if len(key) != 33 or key[:1] != _ED25519:
            raise NoteError("the verifier key is not an Ed25519 key")
        v = cls(name, key[1:])
        if v.key_id.hex() != key_id.lower():
            raise NoteError("the verifier key's id does not match its name and key")
        return v

    def verifies(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    seed: bytes = field(repr=False)

    @classmethod
    def generate(cls, name: str) -> Signer:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        raw = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(_check_name(name), raw)

    @property
    def verifier(self) -> Verifier:
        public = Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes(Encoding.Raw,
                                                                                           PublicFormat.Raw)
        return Verifier(self.name, public)

    def __str__(self) -> str:
        v = self.verifier
        return f"PRIVATE+KEY+{self.name}+{v.key_id.hex()}+{base64.b64encode(_ED25519 + self.seed).decode()}"

    @classmethod
    def parse(cls, text: str) -> Signer:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("a signer key is PRIVATE+KEY+<name>+<id>+<base64 key>")
        key = _b64(parts[4], "the signer key")
        if len(key) != 33 or key[:1] != _ED25519:
            raise NoteError("the signer key is not an Ed25519 key")
        s = cls(_check_name(parts[2]), key[1:])
        if s.verifier.key_id.hex() != parts[3].lower():
            raise NoteError("the signer key's id does not match its name and key")
        return s

    def sign(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head: the log ``origin`` had ``size`` events, whose Merkle root is
    ``root``; ``head`` is the chain's (seq, hash) at that size when the note says."""

    origin: str
    size: int
    root: bytes
    head: tuple[int, str] | None = None
    text: str = ""  # the signed note as written

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        if self.head is not None:
            lines.append(f"{HEAD_EXTENSION} {self.head[0]} {self.head[1]}")
        return "\n".join(lines) + "\n"


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> Checkpoint:
    body = cp.body()
    sig = base64.b64encode(signer.verifier.key_id + signer.sign(body.encode())).decode()
    return Checkpoint(cp.origin, cp.size, cp.root, cp.head, f"{body}\n{_DASH}{signer.name} {sig}\n")


def _split(text: str) -> tuple[str, str]:
    body, sep, sigs = text.partition("\n\n")
    if not sep or not body:
        raise NoteError("not a signed note: no blank line between the text and its signatures")
    return body + "\n", sigs


def parse_checkpoint(text: str) -> Checkpoint:
    """The checkpoint a signed note holds, its signatures NOT checked (``open_checkpoint``
    checks them): what a prover quotes, never what a verifier trusts."""
    body, _ = _split(text)
    lines = body.splitlines()
    if len(lines) < 3 or not lines[1].isdigit():
        raise NoteError("not a checkpoint: expected origin, tree size and root hash lines")
    root = _b64(lines[2], "the root hash")
    if len(root) != 32:
        raise NoteError("not a checkpoint: the root hash is not 32 bytes")
    head = None
    for ext in lines[3:]:
        parts = ext.split(" ")
        if parts[0] == HEAD_EXTENSION and len(parts) == 3 and parts[1].isdigit():
            head = (int(parts[1]), parts[2])
    return Checkpoint(lines[0], int(lines[1]), root, head, text)


def open_checkpoint(text: str, verifier: Verifier) -> Checkpoint:
    """The checkpoint of a signed note, once ``verifier``'s signature on it holds;
    ``NoteError`` saying why not otherwise (a changed byte, another key, not a checkpoint)."""
    body, sigs = _split(text)
    signed = False
    for line in sigs.splitlines():
        if not line.startswith(_DASH):
            raise NoteError(f"not a signature line: {line[:40]!r}")
        name, _, sig = line[len(_DASH):].rpartition(" ")
        raw = _b64(sig, "a signature")
        if name == verifier.name and raw[:4] == verifier.key_id:
            if not verifier.verifies(body.encode(), raw[4:]):
                raise NoteError(f"the signature of {name} does not verify: the checkpoint was changed, or "
                                "signed by another key")
            signed = True
    if not signed:
        raise NoteError(f"the checkpoint is not signed by {verifier.name} ({verifier.key_id.hex()})")
    return parse_checkpoint(text)
