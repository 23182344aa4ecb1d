"""``gitops verify``, ``keys``, ``checkpoint``, ``prove`` and ``verify-proof``: the log's
integrity, checked from inside (the chain, the Merkle tree) and against anchors kept
elsewhere (signed checkpoints, a head a report printed)."""

from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import click

from gitops.cli.app import Context, cli, pass_ctx
from gitops.cli.render import Columns, render_document, render_rows
from gitops.events.models import EventSource, IntegrityAcknowledged, IntegrityAcknowledgedPayload, event_id
from gitops.model.errors import ProofError, UsageError
from gitops.model.identity import host, os_user
from gitops.model.note import NoteError, open_checkpoint
from gitops.model.times import utc_now
from gitops.query.integrity import (
    CHECKPOINT_FILE,
    KeyStore,
    check_against,
    make_checkpoint,
    prove,
    verify_proof,
)
from gitops.store import EventLog, VerifyResult

_HEAD = re.compile(r"(\d+):([0-9a-f]{64})\Z")


def _keys(ctx: Context) -> KeyStore:
    return KeyStore(ctx.config.integrity.key_dir, db=ctx.db_path)


def _read_checkpoint(where: str) -> str:
    """A checkpoint's text from a file, or from ``git:REPO[#REF]`` (the tip of the ref)."""
    if where.startswith("git:"):
        from gitops.sources.git.publish import read_published

        repo, _, ref = where[4:].partition("#")
        text = read_published(repo, ref or "refs/gitops/checkpoints", CHECKPOINT_FILE)
        if text is None:
            raise UsageError(f"{where}: no checkpoint has been published there")
        return text
    try:
        return Path(where).read_text()
    except OSError as e:
        raise UsageError(f"cannot read checkpoint {where}: {e.strerror}") from None


def _acknowledge(log: EventLog, result: VerifyResult, reason: str) -> int:
    head = log.conn.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
    user, where = os_user(), host()
    at = utc_now()
    appended = log.acknowledge(IntegrityAcknowledged(
        id=event_id("integrity.acknowledged", user, at.isoformat(), uuid.uuid4().hex), source=EventSource.OPERATOR,
        actor=user, effective_at=at,
        payload=IntegrityAcknowledgedPayload(
            problem=str(result.reason), first_bad_seq=result.first_bad_seq, detail=result.detail,
            last_seq=log.last_seq() or None, recorded_head_seq=head[0] if head else None,
            recorded_head_hash=head[1] if head else None, user=user, host=where, reason=reason)))
    return appended[0].seq


def _acknowledged(log: EventLog) -> list[str]:
    out = []
    for r in log.read(types=["integrity.acknowledged"]):
        p = r.event.payload
        if isinstance(p, IntegrityAcknowledgedPayload):
            out.append(f"seq {r.seq}: {p.problem} at seq {p.first_bad_seq} ({p.detail}), acknowledged by {p.user} "
                       f"on {p.host}")
    return out


VERIFY_COLUMNS = Columns(("check", "ok", "detail"), ("check", "ok", "detail"), "check")


def _check_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """verify's document as a row per check."""
    t = doc.get("tampered")
    rows = [{"check": "chain and tree", "ok": t is None,
             "detail": f"{doc['events']} events up to seq {doc['last_seq']}" if t is None else
             f"seq {t['first_bad_seq']}: {t['reason']}: {t['detail']}"}]
    rows += [{"check": f"checkpoint {c['checkpoint']}", "ok": c["ok"], "detail": c["message"]}
             for c in doc["checkpoints"]]
    if doc["expect_head"] is not None:
        h = doc["expect_head"]
        rows.append({"check": f"head seq {h['seq']}", "ok": h["ok"], "detail": h["hash"]})
    if doc["projections"] is not None:
        p = doc["projections"]
        rows.append({"check": "projections", "ok": p["ok"], "detail": f"{len(p['differences'])} differences"})
    return rows


def _anchors(ctx: Context, checkpoints: tuple[str, ...], key: str | None,
             expect_head: str | None) -> tuple[tuple[int, str] | None, list[tuple[str, Any]]]:
    """What verify checks the log against: the head given, and each signed checkpoint (read
    and its signature checked), before the log is opened."""
    head = None
    if expect_head is not None:
        m = _HEAD.match(expect_head.strip().lower())
        if m is None:
            raise UsageError(f"--expect-head {expect_head!r}: expected SEQ:HASH (a 64-digit hex hash)")
        head = (int(m.group(1)), m.group(2))
    signed = []
    if checkpoints:
        verifier = _keys(ctx).verifier(key)
        for where in checkpoints:
            try:
                signed.append((where, open_checkpoint(_read_checkpoint(where), verifier)))
            except NoteError as e:
                raise ProofError(f"checkpoint {where}: {e}") from None
    return head, signed


@cli.command()
@click.option("--projections", is_flag=True,
              help="Also check that the projection tables (current state, changes) equal a fresh fold of the log.")
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="FILE|git:REPO[#REF]",
              help="Also prove the log extends this signed checkpoint (repeatable).")
@click.option("--key", default=None, help="The verifier key, or a file holding it (default: the key directory's).")
@click.option("--expect-head", default=None, metavar="SEQ:HASH",
              help="Also check that event SEQ has this hash (the head_hash a report printed).")
@click.option("--acknowledge", is_flag=True,
              help="Record what was found as an integrity.acknowledged event, so that writers go on.")
@click.option("--reason", default="", help="With --acknowledge: why, in the operator's words.")
@click.option("-o", "--output", type=click.Choice(["text", "table", "wide", "json", "yaml", "csv", "name"]),
              default="text", show_default=True,
              help="text: a line per check; table/wide/csv/name: a row per check; json/yaml: one document of every "
                   "check and its result.")
@pass_ctx
def verify(ctx: Context, projections: bool, checkpoints: tuple[str, ...], key: str | None,
           expect_head: str | None, acknowledge: bool, reason: str, output: str) -> None:
    """Recompute the hash chain and the Merkle tree; exit 1 naming the first bad seq when the
    log was tampered with, or when it does not extend a checkpoint given."""
    head, signed = _anchors(ctx, checkpoints, key, expect_head)
    text = output == "text"

    def say(line: str, *, bad: bool = False, note: bool = False) -> None:
        if text:
            click.echo(line, err=bad or note)

    problems: list[str] = []
    doc: dict[str, Any] = {}
    with ctx.open_log() as log:
        result = log.verify(at_sizes={cp.size for _, cp in signed})
        say(result.describe(), bad=not result.ok)
        doc.update(ok=result.ok, events=result.checked, last_seq=result.last_seq, head_hash=result.head_hash,
                   merkle_root=result.root.hex() if result.root is not None else None,
                   tampered=None if result.ok else {"first_bad_seq": result.first_bad_seq,
                                                    "reason": str(result.reason), "detail": result.detail},
                   checkpoints=[], expect_head=None, projections=None, acknowledged=_acknowledged(log))
        if not result.ok:
            problems.append(result.describe())
        for where, cp in signed:
            judged = check_against(log, cp, result)
            say(f"checkpoint {where}: {judged.message}", bad=not judged.ok)
            doc["checkpoints"].append({"checkpoint": where, "size": cp.size, "ok": judged.ok,
                                       "message": judged.message})
            if not judged.ok:
                problems.append(judged.message)
        if head is not None:
            row = log.row(head[0])
            ok = row is not None and row["hash"] == head[1] and result.ok
            say(f"head seq {head[0]}: {'matches' if ok else 'does not match'} {head[1][:16]}...", bad=not ok)
            doc["expect_head"] = {"seq": head[0], "hash": head[1], "ok": ok}
            if not ok:
                problems.append("the expected head")
        differences = log.verify_projections() if projections and result.ok else []
        for note in doc["acknowledged"]:
            say(f"note: an earlier finding was acknowledged: {note}", note=True)
        if acknowledge:
            if result.ok:
                say("nothing to acknowledge: the log verified", note=True)
            else:
                seq = _acknowledge(log, result, reason)
                doc["acknowledged_as_seq"] = seq
                say(f"recorded as seq {seq} (integrity.acknowledged); writers go on from here", note=True)
    if projections and result.ok:
        doc["projections"] = {"ok": not differences, "differences": differences}
    if differences:
        for d in differences[:20]:
            say(f"projection differs: {d}", bad=True)
        say(f"the projection tables differ from the log in {len(differences)} places; "
            "'gitops init --rebuild-projections' rebuilds them", bad=True)
    elif projections and result.ok:
        say("projections equal a fresh fold of the log")
    doc["ok"] = not (problems or differences)
    if output in ("json", "yaml"):
        render_document(doc, output)
    elif not text:
        render_rows(_check_rows(doc), columns=VERIFY_COLUMNS, output=output)
    if problems or differences:
        sys.exit(1)
    # only a log that verified records that it was verified: a failed check appends nothing
    ctx.record("verify", {"projections": projections or None, "checkpoint": ",".join(checkpoints) or None,
                          "expect_head": expect_head}, "succeeded", "")


@cli.group()
def keys() -> None:
    """The signing key of checkpoints and the key of Secret digests (kept outside the database)."""


@keys.command("init")
@click.option("--name", default=None, help="The key's name in signatures (default: gitops-<host>).")
@pass_ctx
def keys_init(ctx: Context, name: str | None) -> None:
    """Make the keys in the key directory (integrity.key_dir); never replaces one."""
    store = _keys(ctx)
    verifier = store.init(name or f"gitops-{re.sub(r'[^A-Za-z0-9.-]', '-', host())}")
    click.echo(f"wrote {store.signing_path} and {store.digest_path} (mode 600) and {store.verifier_path}", err=True)
    click.echo(str(verifier))


@keys.command("show")
@pass_ctx
def keys_show(ctx: Context) -> None:
    """Print the verifier (public) key: give it to whoever checks checkpoints and proofs."""
    click.echo(str(_keys(ctx).verifier()))


@cli.command()
@pass_ctx
def checkpoint(ctx: Context) -> None:
    """Sign the log's Merkle root and size now, and publish the checkpoint where the config
    says (integrity.publish_dir, integrity.publish_git); print it."""
    signer = _keys(ctx).signer()
    with ctx.open_log() as log:
        cp, published = make_checkpoint(log, signer, ctx.config.integrity)
    sys.stdout.write(cp.text)
    for where in published:
        click.echo(f"published to {where}", err=True)
    if not published:
        click.echo("warning: published nowhere (set integrity.publish_dir or integrity.publish_git): a checkpoint "
                   "kept only beside the log proves nothing to anyone", err=True)


@cli.command("prove")
@click.argument("seq", type=int)
@click.option("--checkpoint", "where", default=None, metavar="FILE|git:REPO[#REF]",
              help="The checkpoint to prove against (default: the latest this log made).")
@click.option("-o", "--output", type=click.Choice(["json"]), default="json", show_default=True,
              help="Output format.")
@pass_ctx
def prove_cmd(ctx: Context, seq: int, where: str | None, output: str) -> None:
    """Print event SEQ with its inclusion proof against a signed checkpoint, for
    'gitops verify-proof' to check without the database."""
    text = _read_checkpoint(where) if where else None
    with ctx.open_log() as log:
        doc = prove(log, seq, text)
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


@cli.command("verify-proof")
@click.argument("proof", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--key", required=True, help="The verifier key, or a file holding it.")
def verify_proof_cmd(proof: str, key: str) -> None:
    """Check a proof from 'gitops prove' with the public key alone: no database, no log."""
    try:
        text = sys.stdin.read() if proof == "-" else Path(proof).read_text()
        doc = json.loads(text)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read proof {proof}: {e}") from None
    click.echo(verify_proof(doc, KeyStore().verifier(key)))
