"""The NAS-Bench-201 cell search space: strings, indices, op lists, isomorphism, encodings.

Architecture strings use NAS-Bench-201's format exactly, so tools written for it work unchanged::

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|

The six edges, in string order, are (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2). The index of an
architecture is the base-5 number whose digits are its op ids in string order, the first edge being
the most significant digit (so index 0 is all-``none`` and 15624 is all-``avg_pool_3x3``). Both the
numbering and the op order are part of the benchmark's contract and never change.

Isomorphic cells share one canonical id: the smallest index in their class, under NAS-Bench-201's own
rule (``Structure.to_unique_str(consider_zero=True)``), which yields its 6,466 unique architectures.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence

import numpy as np

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
N_OPS = len(OPS)
N_EDGES = len(EDGES)
N_ARCHS = N_OPS**N_EDGES  # 15,625
N_CANONICAL = 6466  # NAS-Bench-201's count of unique architectures
OP_INDEX = {op: i for i, op in enumerate(OPS)}
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
_PLACES = np.array([N_OPS ** (N_EDGES - 1 - e) for e in range(N_EDGES)], dtype=np.int64)

ArchLike = "str | int | Sequence[str] | Sequence[int]"


def _bad(what: str) -> ValueError:
    return ValueError(
        f"{what}. A valid architecture string looks like {EXAMPLE!r} "
        f"(ops: {', '.join(OPS)}); an index is an int in [0, {N_ARCHS - 1}]; "
        f"an op list has {N_EDGES} op names or op ids in string order."
    )


def parse(arch: str) -> tuple[int, ...]:
    """Parse a NAS-Bench-201 string into op ids, in string order; raise ValueError naming the fault."""
    if not isinstance(arch, str):
        raise _bad(f"expected an architecture string, got {type(arch).__name__}")
    s = arch.strip()
    if not (s.startswith("|") and s.endswith("|")):
        raise _bad(f"architecture string {arch!r} must start and end with '|'")
    nodes = s.split("+")
    if len(nodes) != 3:
        raise _bad(f"architecture string {arch!r} has {len(nodes)} node groups separated by '+', expected 3")
    ops: list[int] = []
    for node, group in enumerate(nodes, start=1):
        if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
            raise _bad(f"node {node} group {group!r} in {arch!r} must be enclosed in '|'")
        tokens = group[1:-1].split("|")
        if len(tokens) != node:
            raise _bad(f"node {node} in {arch!r} has {len(tokens)} incoming edges, expected {node}")
        for src, token in enumerate(tokens):
            if token.count("~") != 1:
                raise _bad(f"edge {token!r} of node {node} in {arch!r} is not of the form 'op~input'")
            op, inp = token.split("~")
            if op not in OP_INDEX:
                raise _bad(f"unknown op {op!r} in {arch!r}")
            # compare the text itself: int() would accept '01', ' 1', '1_0', non-ASCII digits, and
            # raise its own ValueError (without the example) on more than 4,300 digits
            if inp != str(src):
                raise _bad(
                    f"edge {token!r} of node {node} in {arch!r} names input {inp!r}, expected {src} "
                    f"(edges of node {node} come from nodes 0..{node - 1} in order)"
                )
            ops.append(OP_INDEX[op])
    return tuple(ops)


def to_str(ops: Sequence[int]) -> str:
    """Op ids (or names) in string order -> NAS-Bench-201 string."""
    names = [OPS[o] for o in _check_op_list(ops)]
    groups, k = [], 0
    for node in (1, 2, 3):
        groups.append("|" + "|".join(f"{names[k + s]}~{s}" for s in range(node)) + "|")
        k += node
    return "+".join(groups)


def ops_to_index(ops: Sequence[int]) -> int:
    """Op ids (or names) in string order -> index; raise ValueError on a malformed op list."""
    return int(np.dot(np.asarray(_check_op_list(ops), dtype=np.int64), _PLACES))


def index_to_ops(index: int) -> tuple[int, ...]:
    index = check_index(index)
    return tuple(int(d) for d in (index // _PLACES) % N_OPS)


def check_index(index: object) -> int:
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise _bad(f"expected an int index, got {type(index).__name__}")
    if not 0 <= int(index) < N_ARCHS:
        raise _bad(f"index {int(index)} is out of range")
    return int(index)


def to_ops(arch: object) -> tuple[int, ...]:
    """Any accepted form (string, index, op-name list, op-id list) -> op ids."""
    if isinstance(arch, str):
        return parse(arch)
    if isinstance(arch, (int, np.integer)) and not isinstance(arch, (bool, np.bool_)):
        return index_to_ops(arch)
    if isinstance(arch, (list, tuple, np.ndarray)):
        return _check_op_list(arch)
    raise _bad(f"cannot read an architecture from a {type(arch).__name__}")


def _check_op_list(arch: object) -> tuple[int, ...]:
    """A list / tuple / 1-d array of 6 op names or op ids -> op ids; ValueError naming the fault."""
    if not isinstance(arch, (list, tuple, np.ndarray)):
        raise _bad(f"expected an op list, got {type(arch).__name__}")
    if isinstance(arch, np.ndarray) and arch.ndim != 1:
        raise _bad(f"op array has shape {arch.shape}, expected ({N_EDGES},)")
    seq = list(arch)
    if len(seq) != N_EDGES:
        raise _bad(f"op list {seq!r} has {len(seq)} entries, expected {N_EDGES}")
    out = []
    for v in seq:
        if isinstance(v, str):
            if v not in OP_INDEX:
                raise _bad(f"unknown op {v!r} in op list {seq!r}")
            out.append(OP_INDEX[v])
        elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and 0 <= v < N_OPS:
            out.append(int(v))
        else:
            raise _bad(f"op list entry {v!r} is neither an op name nor an op id in [0, {N_OPS - 1}]")
    return tuple(out)


def to_index(arch: object) -> int:
    """Any accepted form -> index in [0, 15624]."""
    if isinstance(arch, (int, np.integer)) and not isinstance(arch, (bool, np.bool_)):
        return check_index(arch)
    return ops_to_index(to_ops(arch))


def arch_str(arch: object) -> str:
    return to_str(to_ops(arch))


def unique_key(ops: Sequence[int]) -> str:
    """NAS-Bench-201's isomorphism key (``to_unique_str(consider_zero=True)``) of the output node.

    A node's key is the sorted list of its incoming terms; a ``none`` edge, or an edge whose input
    node's key is exactly the zero term, contributes the zero term ``#`` (kept in the list);
    ``skip_connect`` passes its input key through; any other op wraps its input key with its name.
    """
    keys = {0: "0"}
    for node in (1, 2, 3):
        terms = []
        for (dst, src), op in zip(EDGES, ops):
            if dst != node:
                continue
            if op == 0 or keys[src] == "#":
                terms.append("#")
            elif op == 1:
                terms.append(keys[src])
            else:
                terms.append(f"({keys[src]})@{OPS[op]}")
        keys[node] = "+".join(sorted(terms))
    return keys[3]


@functools.cache
def _canonical_table() -> np.ndarray:
    table = np.empty(N_ARCHS, dtype=np.int32)
    first: dict[str, int] = {}
    for index, ops in enumerate(itertools.product(range(N_OPS), repeat=N_EDGES)):
        table[index] = first.setdefault(unique_key(ops), index)
    table.setflags(write=False)
    return table


def canonical_table() -> np.ndarray:
    """Read-only int32 array: index -> canonical index (smallest index of its isomorphism class)."""
    return _canonical_table()


def canonical(arch: object) -> int:
    return int(_canonical_table()[to_index(arch)])


@functools.cache
def canonical_indices() -> np.ndarray:
    """Sorted canonical indices (6,466 of them): the architectures that are actually trained."""
    out = np.unique(_canonical_table()).astype(np.int64)
    out.setflags(write=False)
    return out


def is_zero_cell(arch: object) -> bool:
    """True where the cell's output is identically zero (no path from input to output)."""
    ops = to_ops(arch)
    alive = {0: True}
    for node in (1, 2, 3):
        alive[node] = any(alive[src] and op != 0 for (dst, src), op in zip(EDGES, ops) if dst == node)
    return not alive[3]


# --- neighbourhoods and sampling ------------------------------------------------------------


def neighbours(arch: object) -> list[int]:
    """All indices one edge-op change away (24 of them)."""
    ops = to_ops(arch)
    out = []
    for e in range(N_EDGES):
        for op in range(N_OPS):
            if op != ops[e]:
                new = list(ops)
                new[e] = op
                out.append(ops_to_index(new))
    return out


def mutate(arch: object, rng: np.random.Generator) -> int:
    """One random edge gets a different random op (NAS-Bench-201's regularized-evolution mutation)."""
    ops = list(to_ops(arch))
    e = int(rng.integers(N_EDGES))
    ops[e] = int(rng.choice([o for o in range(N_OPS) if o != ops[e]]))
    return ops_to_index(ops)


def sample(rng: np.random.Generator, n: int | None = None, canonical_only: bool = False):
    """Uniform random indices (of all 15,625, or of the 6,466 canonical ones)."""
    pool = canonical_indices() if canonical_only else None
    size = 1 if n is None else n
    out = rng.choice(pool, size=size) if pool is not None else rng.integers(0, N_ARCHS, size=size)
    return int(out[0]) if n is None else out.astype(np.int64)


# --- encodings ------------------------------------------------------------------------------


def ops_matrix(archs: Iterable[object] | np.ndarray) -> np.ndarray:
    """(n, 6) int array of op ids for many architectures (vectorised over index arrays)."""
    if (
        isinstance(archs, (str, bytes))
        or not isinstance(archs, Iterable)
        or (isinstance(archs, np.ndarray) and archs.ndim == 0)
    ):
        raise _bad(f"expected a sequence of architectures, got a single {type(archs).__name__}")
    arr = np.asarray(archs)
    if arr.dtype.kind in "iu" and arr.ndim == 1:
        if arr.size and (arr.min() < 0 or arr.max() >= N_ARCHS):
            bad = arr[(arr < 0) | (arr >= N_ARCHS)][0]
            raise _bad(f"index {int(bad)} is out of range")
        arr = arr.astype(np.int64, copy=False)  # uint64 // int64 would give float64
        return (arr[:, None] // _PLACES[None, :]) % N_OPS
    return np.array([to_ops(a) for a in archs], dtype=np.int64).reshape(-1, N_EDGES)


def zero_cells(archs: Iterable[object] | np.ndarray) -> np.ndarray:
    """(n,) bool: :func:`is_zero_cell` for many architectures (vectorised over the op matrix)."""
    ops = ops_matrix(archs)
    alive = {0: np.ones(len(ops), dtype=bool)}
    for node in (1, 2, 3):
        alive[node] = np.zeros(len(ops), dtype=bool)
        for e, (dst, src) in enumerate(EDGES):
            if dst == node:
                alive[node] |= alive[src] & (ops[:, e] != 0)
    return ~alive[3]


def one_hot(archs: Iterable[object] | np.ndarray) -> np.ndarray:
    """(n, 30) float32 one-hot encoding, edge-major: column 5*e + op."""
    ops = ops_matrix(archs)
    out = np.zeros((len(ops), N_EDGES * N_OPS), dtype=np.float32)
    rows = np.arange(len(ops))[:, None]
    out[rows, np.arange(N_EDGES)[None, :] * N_OPS + ops] = 1.0
    return out


def adjacency(arch: object) -> tuple[np.ndarray, np.ndarray]:
    """Op-on-node encoding (as in NAS-Bench-201 predictors): 8 nodes = input, 6 edge-ops, output.

    Returns (adjacency (8, 8) float32, node features (8, 7) float32 one-hot over
    [input, output, *OPS]).
    """
    ops = to_ops(arch)
    adj = np.zeros((8, 8), dtype=np.float32)
    feats = np.zeros((8, 2 + N_OPS), dtype=np.float32)
    feats[0, 0] = 1.0
    feats[7, 1] = 1.0
    # node j of the cell is the sum of edges into it; edge k sits at graph node k + 1
    producers = {0: [0]}
    for k, ((dst, src), op) in enumerate(zip(EDGES, ops)):
        feats[k + 1, 2 + op] = 1.0
        for p in producers[src]:
            adj[p, k + 1] = 1.0
        producers.setdefault(dst, []).append(k + 1)
    for p in producers[3]:
        adj[p, 7] = 1.0
    return adj, feats
