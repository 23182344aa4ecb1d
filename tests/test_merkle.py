"""The Merkle tree (RFC 9162 §2.1) against published RFC 6962 test vectors: the roots of the
eight-leaf tree of Certificate Transparency's tests, and the inclusion and consistency
proofs of the transparency-dev/merkle project, valid and mutated (``tests/vectors``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitops.model.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    frontier_extend,
    frontier_root,
    inclusion_proof,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "rfc6962.json").read_text())
LEAVES = [leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaf_inputs_hex"]]


def _b64(v: str | None) -> bytes:
    return base64.b64decode(v) if v else b""


def _mth(leaves: list[bytes]) -> Any:
    return lambda a, b: root_of(leaves[a:b])


def test_the_roots_of_every_prefix_of_the_rfc6962_tree() -> None:
    assert EMPTY_ROOT.hex() == VECTORS["roots_hex"][0]
    frontier: list[bytes] = []
    for size in range(1, len(LEAVES) + 1):
        assert root_of(LEAVES[:size]).hex() == VECTORS["roots_hex"][size]
        frontier_extend(size - 1, frontier, [VECTORS["leaf_inputs_hex"][size - 1]], [])
        assert frontier_root(frontier).hex() == VECTORS["roots_hex"][size], size


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: c["file"].removeprefix("testdata/"))
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    ok = verify_inclusion(case["leafIdx"], case["treeSize"], _b64(case["leafHash"]),
                          [_b64(p) for p in case["proof"] or []], _b64(case["root"]))
    assert ok is not case["wantErr"], case["desc"]
    if not case["wantErr"] and case["treeSize"] <= len(LEAVES) and _b64(case["leafHash"]) in LEAVES:
        # and the proof the log would hand out is that one
        assert inclusion_proof(case["leafIdx"], case["treeSize"], _mth(LEAVES)) == [_b64(p) for p in case["proof"]
                                                                                    or []]


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: c["file"].removeprefix("testdata/"))
def test_consistency_vectors(case: dict[str, Any]) -> None:
    ok = verify_consistency(case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]),
                            [_b64(p) for p in case["proof"] or []])
    assert ok is not case["wantErr"], case["desc"]
    if not case["wantErr"] and case["size2"] <= len(LEAVES) and case["root2"] and \
            _b64(case["root2"]) == root_of(LEAVES[:case["size2"]]):
        assert consistency_proof(case["size1"], case["size2"], _mth(LEAVES)) == [
            _b64(p) for p in case["proof"] or []]


@given(st.integers(min_value=1, max_value=70), st.data())
def test_every_proof_of_any_tree_verifies_and_a_changed_leaf_does_not(n: int, data: st.DataObject) -> None:
    entries = [i.to_bytes(4, "big") for i in range(n)]
    leaves = [leaf_hash(e) for e in entries]
    frontier: list[bytes] = []
    for i, entry in enumerate(entries):
        done: list[tuple[int, int, bytes]] = []
        assert frontier_extend(i, frontier, [entry.hex()], done) == i + 1
        assert done[0] == (0, i, leaves[i])  # the leaf itself first
        for level, index, h in done:  # every completed node is the root of its leaves
            assert h == root_of(leaves[index << level:(index + 1) << level])
    root = frontier_root(frontier)
    assert root == root_of(leaves)
    i = data.draw(st.integers(min_value=0, max_value=n - 1))
    proof = inclusion_proof(i, n, _mth(leaves))
    assert verify_inclusion(i, n, leaves[i], proof, root)
    assert not verify_inclusion(i, n, leaf_hash(b"forged"), proof, root)
    m = data.draw(st.integers(min_value=0, max_value=n))
    c = consistency_proof(m, n, _mth(leaves))
    assert verify_consistency(m, n, root_of(leaves[:m]), root, c) is (m > 0)
    if 0 < m < n:
        forked = [*leaves[:m - 1], leaf_hash(b"fork"), *leaves[m:]]
        assert not verify_consistency(m, n, root_of(forked[:m]), root, c)


def test_keys_round_trip_whatever_their_base64_holds() -> None:
    """Any key's text parses back to it, a "+" in its base64 included (the name and id
    are split off the front, the key is the rest)."""
    from gitops.model.note import Signer, Verifier

    seen_plus = False
    for _ in range(64):
        s = Signer.generate("test-log")
        seen_plus |= "+" in str(s).split("+", 4)[4]
        assert Signer.parse(str(s)) == s
        assert Verifier.parse(str(s.verifier) + "\n") == s.verifier
    assert seen_plus  # 64 random keys: the chance that none holds "+" is about 1e-60


def test_a_signed_checkpoint_opens_only_with_its_key_and_unchanged() -> None:
    from gitops.model.note import Checkpoint, NoteError, Signer, open_checkpoint, sign_checkpoint

    s, other = Signer.generate("a"), Signer.generate("a")
    cp = sign_checkpoint(Checkpoint("example.org/log", 3, bytes(range(32)), (3, "ab" * 32)), s)
    opened = open_checkpoint(cp.text, s.verifier)
    assert (opened.origin, opened.size, opened.root, opened.head) == ("example.org/log", 3, bytes(range(32)),
                                                                       (3, "ab" * 32))
    with pytest.raises(NoteError):
        open_checkpoint(cp.text, other.verifier)
    with pytest.raises(NoteError):
        open_checkpoint(cp.text.replace("\n3\n", "\n4\n", 1), s.verifier)
