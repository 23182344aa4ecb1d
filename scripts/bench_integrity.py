"""Benchmark: the Merkle tree and signed checkpoints on a large log.

Builds a log of N events (default 1,000,000) through the real ``append``, then measures,
each next to a baseline taken in the same run:

- a **checkpoint** (the tree's root read from its stored tiles, signed, written to a
  publish directory, recorded in the log): target < 100 ms; baseline: ``verify``, the pass
  over the whole log a checkpoint would cost without the stored tree;
- **building the tree** of an existing log (what migration 0007 does to an old log):
  target within 2x of ``verify``;
- an **inclusion proof** (``gitops prove``'s work) of random events: target < 50 ms;
  baseline: reading the event's row.

Append throughput with the tree (>= 0.5x raw executemany) is ``scripts/bench_append.py``.

    python scripts/bench_integrity.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench_append import build_event

from gitops.model.note import Signer
from gitops.query.integrity import IntegritySettings, make_checkpoint, prove, verify_proof
from gitops.store import EventLog


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--proofs", type=int, default=200)
    args = ap.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "log.db"
        settings = IntegritySettings(origin="bench.example/log", publish_dir=str(Path(d) / "published"))
        signer = Signer.generate("bench")
        with EventLog(path) as log:
            start = time.perf_counter()
            for b in range(0, n, 2000):
                log.append([build_event(i) for i in range(b, min(n, b + 2000))])
            build_s = time.perf_counter() - start

            start = time.perf_counter()  # one pass, on one core: what the tree's targets were set against
            result = log.verify(parallel=False)
            verify_s = time.perf_counter() - start
            assert result.ok, result.describe()
            start = time.perf_counter()  # and as 'gitops verify' runs it on a big log: in chunks, on every core
            assert log.verify().ok
            chunked_s = time.perf_counter() - start

            times = []
            for i in range(5):  # each one signs the log as it is then (the last checkpoint's event included)
                log.append([build_event(n + i)])
                start = time.perf_counter()
                make_checkpoint(log, signer, settings)
                times.append(time.perf_counter() - start)
            checkpoint_s = statistics.median(times)

            start = time.perf_counter()
            log.rebuild_projections(only=["merkle"])
            rebuild_s = time.perf_counter() - start
            assert log.verify().ok

            rng = random.Random(1)
            seqs = [rng.randint(1, n) for _ in range(args.proofs)]
            start = time.perf_counter()
            docs = [prove(log, seq) for seq in seqs]
            proof_s = (time.perf_counter() - start) / len(seqs)
            start = time.perf_counter()
            for seq in seqs:
                log.row(seq)
            row_s = (time.perf_counter() - start) / len(seqs)
        for doc in docs[:20]:
            verify_proof(doc, signer.verifier)
    print(f"events: {n} (appended in {build_s:.0f} s)")
    print(f"verify (baseline):      {verify_s * 1000:10.1f} ms one pass; {chunked_s * 1000:.1f} ms on every core "
          f"({chunked_s / verify_s:.2f}x)")
    print(f"checkpoint:             {checkpoint_s * 1000:10.1f} ms  ({checkpoint_s / verify_s:.4f}x verify; "
          "target < 100 ms)")
    print(f"tree rebuild:           {rebuild_s * 1000:10.1f} ms  ({rebuild_s / verify_s:.2f}x verify in one pass, "
          f"{rebuild_s / chunked_s:.2f}x on every core; target <= 2x)")
    print(f"row read (baseline):    {row_s * 1000:10.3f} ms")
    print(f"inclusion proof:        {proof_s * 1000:10.3f} ms  ({proof_s / row_s:.1f}x a row read; target < 50 ms)")


if __name__ == "__main__":
    main()
