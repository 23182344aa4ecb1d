"""Who signed a commit: the key id in an OpenPGP signature, the key fingerprint in an SSH
signature. This reads the signature; it does not verify it (that needs the signer's key,
which the log does not have). ``signed`` in a ``git.commit`` event means "carries a
signature", and ``signer_key`` says whose key it names."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

__all__ = ["signer_key"]


def _armored_body(text: str) -> bytes | None:
    lines = [ln.strip() for ln in text.strip().splitlines()]
    if len(lines) < 3 or not lines[0].startswith("-----BEGIN") or not lines[-1].startswith("-----END"):
        return None
    body = [ln for ln in lines[1:-1] if ln and ":" not in ln and not ln.startswith("=")]
    try:
        return base64.b64decode("".join(body))
    except (binascii.Error, ValueError):
        return None


def _pgp_subpacket_key(data: bytes) -> str | None:
    i, issuer, fingerprint = 0, None, None
    while i < len(data):
        first = data[i]
        if first < 192:
            length, i = first, i + 1
        elif first < 255:
            length, i = ((first - 192) << 8) + data[i + 1] + 192, i + 2
        else:
            length, i = struct.unpack(">I", data[i + 1 : i + 5])[0], i + 5
        if length == 0 or i + length > len(data):
            return None
        kind, body = data[i] & 0x7F, data[i + 1 : i + length]
        if kind == 16 and len(body) == 8:
            issuer = body.hex().upper()
        elif kind == 33 and len(body) > 1:
            fingerprint = body[1:].hex().upper()
        i += length
    return fingerprint or issuer


def _pgp_key(packet: bytes) -> str | None:
    if not packet or not packet[0] & 0x80:
        return None
    if packet[0] & 0x40:  # new format: tag in the low six bits, then a length
        tag, first = packet[0] & 0x3F, packet[1]
        if first < 192:
            start = 2
        elif first < 224:
            start = 3
        else:
            start = 6
    else:
        tag, start = (packet[0] >> 2) & 0x0F, 1 + {0: 1, 1: 2, 2: 4}.get(packet[0] & 3, 0)
    if tag != 2:  # not a signature packet
        return None
    body = packet[start:]
    if len(body) < 6 or body[0] not in (4, 5):
        return None
    hashed_len = struct.unpack(">H", body[4:6])[0]
    hashed = body[6 : 6 + hashed_len]
    rest = body[6 + hashed_len :]
    unhashed = rest[2 : 2 + struct.unpack(">H", rest[:2])[0]] if len(rest) >= 2 else b""
    return _pgp_subpacket_key(hashed) or _pgp_subpacket_key(unhashed)


def _ssh_key(blob: bytes) -> str | None:
    if not blob.startswith(b"SSHSIG") or len(blob) < 14:
        return None
    (length,) = struct.unpack(">I", blob[10:14])
    public_key = blob[14 : 14 + length]
    digest = base64.b64encode(hashlib.sha256(public_key).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def signer_key(signature: str) -> str | None:
    """The key a commit signature names, or None when it cannot be read."""
    body = _armored_body(signature)
    if body is None:
        return None
    try:
        if "SSH SIGNATURE" in signature:
            return _ssh_key(body)
        return _pgp_key(body)
    except (IndexError, struct.error):
        return None
