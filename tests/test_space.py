"""Tests of the NAS-Bench-201 cell space: sizes, isomorphism classes, round trips, errors, encodings.

The whole file runs in a few seconds: exhaustive checks over the 15,625 cells are vectorised where
possible, and every hypothesis test runs without a database and without deadlines.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from danas_bench.core import space

FAST = settings(
    database=None,
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

N = space.N_ARCHS
ALL = np.arange(N)
# itertools.product enumerates op tuples lexicographically, i.e. in index order (first edge most
# significant), which is the documented numbering
ALL_TUPLES = list(itertools.product(range(5), repeat=6))
ALL_OPS = np.array(ALL_TUPLES, dtype=np.int64)
_OP_NAMES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# the strings written out independently of space.to_str, in NAS-Bench-201's format
ALL_STRS = ["|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*(_OP_NAMES[o] for o in t)) for t in ALL_TUPLES]
VALID_STRS = frozenset(ALL_STRS)

NONE0 = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
POOL_ALL = "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|"
NONE, SKIP, CONV1, CONV3, POOL = range(5)
SEPARATORS = "|+~"

indices = st.integers(0, N - 1)
op_tuples = st.tuples(*[st.integers(0, 4)] * 6)
# text that cannot change the structure of an arch string (no '|', '+' or '~')
plain_text = st.text(alphabet=st.characters(blacklist_characters=SEPARATORS, codec="utf-8"), max_size=12)


def assert_bad(fn, *args, needles=()):
    """fn(*args) raises ValueError whose message names the fault and shows a valid example."""
    with pytest.raises(ValueError) as info:
        fn(*args)
    msg = str(info.value)
    assert space.EXAMPLE in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


def nb201_unique_str(arch: str) -> str:
    """Independent transcription of NAS-Bench-201's ``to_unique_str(consider_zero=True)``,
    working on the string itself (not on op ids)."""
    nodes = {0: "0"}
    for i, group in enumerate(arch.split("+")):
        terms = []
        for token in group[1:-1].split("|"):
            op, xin = token.split("~")
            key = nodes[int(xin)]
            if op == "none" or key == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(key)
            else:
                terms.append(f"({key})@{op}")
        nodes[i + 1] = "+".join(sorted(terms))
    return nodes[3]


def coarse_key(arch: str) -> str:
    """A coarser rule than NAS-Bench-201's (and ours): zero terms are dropped instead of kept."""
    nodes = {0: "0"}
    for i, group in enumerate(arch.split("+")):
        terms = []
        for token in group[1:-1].split("|"):
            op, xin = token.split("~")
            key = nodes[int(xin)]
            if op == "none" or key == "":
                continue
            terms.append(key if op == "skip_connect" else f"({key})@{op}")
        nodes[i + 1] = "+".join(sorted(terms))
    return nodes[3]


def zero_cells() -> np.ndarray:
    """Brute force: a cell is zero iff every input->output path has a `none` edge."""
    live = ALL_OPS != NONE
    e10, e20, e21, e30, e31, e32 = live.T
    return ~(e30 | (e10 & e31) | (e20 & e32) | (e10 & e21 & e32))


def partition_min(keys) -> np.ndarray:
    """index -> smallest index with the same key."""
    first: dict = {}
    return np.array([first.setdefault(k, i) for i, k in enumerate(keys)])


# --- sizes and canonical classes ------------------------------------------------------------


def test_space_constants():
    assert space.OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert space.EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    assert space.N_ARCHS == 15625 == 5**6
    assert space.N_CANONICAL == 6466
    assert space.parse(space.EXAMPLE)  # the example shown in every error message is itself valid


def test_canonical_count_is_nb201s():
    canon = space.canonical_indices()
    assert len(canon) == 6466
    assert np.all(np.diff(canon) > 0)  # sorted and unique
    assert canon[0] == 0 and canon[-1] < N
    assert not canon.flags.writeable


def test_canonical_table_is_a_projection_onto_class_minima():
    table = space.canonical_table()
    assert table.shape == (N,) and not table.flags.writeable
    assert np.array_equal(table[table], table)  # canonical index maps to itself
    assert np.all(table <= ALL)  # canonical is never larger than its members
    assert np.array_equal(np.flatnonzero(table == ALL), space.canonical_indices())
    assert np.unique(table).size == 6466


def test_canonical_classes_equal_nb201_reference_rule():
    """Same class <=> same NAS-Bench-201 unique string, and the canonical id is the class minimum."""
    ref = partition_min(nb201_unique_str(s) for s in ALL_STRS)
    assert np.array_equal(space.canonical_table(), ref)
    assert all(
        space.unique_key(tuple(o)) == nb201_unique_str(s) for o, s in zip(ALL_OPS[::97].tolist(), ALL_STRS[::97])
    )


def test_coarser_rule_is_not_ours():
    coarse = partition_min(coarse_key(s) for s in ALL_STRS)
    n_coarse = np.unique(coarse).size
    assert n_coarse < 6466 and n_coarse != len(space.canonical_indices())
    assert len(space.canonical_indices()) != 5273
    # the NAS-Bench-201 partition refines the coarse one: each of our classes sits inside one coarse class
    table = space.canonical_table()
    assert np.array_equal(coarse[table], coarse)


@FAST
@given(indices)
def test_canonical_accepts_every_form(i):
    c = space.canonical(i)
    ops = space.index_to_ops(i)
    assert c == space.canonical_table()[i]
    assert c == space.canonical(space.arch_str(i)) == space.canonical(list(ops))
    assert c == space.canonical([space.OPS[o] for o in ops]) == space.canonical(np.int64(i))
    assert space.canonical(c) == c and c <= i


# --- round trips ------------------------------------------------------------------------------


def test_ops_matrix_matches_index_to_ops_for_every_index():
    mat = space.ops_matrix(ALL)
    assert mat.shape == (N, 6) and mat.dtype.kind == "i"
    assert np.array_equal(mat, np.array([space.index_to_ops(i) for i in range(N)]))
    assert np.array_equal(mat, ALL_OPS)  # digit order: first edge most significant
    unsigned = space.ops_matrix(ALL.astype(np.uint64))  # uint64 // int64 would silently give floats
    assert unsigned.dtype.kind == "i" and np.array_equal(unsigned, ALL_OPS)
    assert np.array_equal(space.one_hot(np.array([11791], dtype=np.uint64)), space.one_hot([11791]))
    assert np.array_equal(space.ops_matrix(ALL.astype(np.int32)), ALL_OPS)
    assert all(space.ops_to_index(row) == i for i, row in enumerate(ALL_OPS.tolist()))


def test_string_round_trip_for_every_index():
    strs = [space.arch_str(i) for i in range(N)]
    assert strs == ALL_STRS
    assert len(set(strs)) == N
    parsed = [space.parse(s) for s in strs]
    assert parsed == ALL_TUPLES
    assert [space.ops_to_index(ops) for ops in parsed] == list(range(N))
    assert [space.to_index(s) for s in strs] == list(range(N))
    assert [space.to_str(ops) for ops in parsed] == strs
    some = ALL[::7]
    assert np.array_equal(space.ops_matrix([strs[i] for i in some]), ALL_OPS[some])  # non-vectorised path


def test_op_lists_round_trip_for_every_index():
    names = [[_OP_NAMES[o] for o in t] for t in ALL_TUPLES]
    assert [space.to_index(n) for n in names] == list(range(N))
    assert [space.to_index(t) for t in ALL_TUPLES] == list(range(N))
    assert [space.to_ops(n) for n in names[::7]] == ALL_TUPLES[::7]
    assert [space.to_ops(row) for row in ALL_OPS[::7]] == ALL_TUPLES[::7]  # 1-d int arrays


def test_known_example_string():
    ops = space.parse(space.EXAMPLE)
    assert ops == (CONV3, CONV3, POOL, SKIP, CONV3, SKIP)
    assert space.to_str(ops) == space.EXAMPLE
    index = ((((3 * 5 + 3) * 5 + 4) * 5 + 1) * 5 + 3) * 5 + 1
    assert index == 11791 == space.to_index(space.EXAMPLE)
    assert space.arch_str(11791) == space.EXAMPLE
    assert space.parse("  " + space.EXAMPLE + "\n") == ops  # surrounding whitespace only


def test_ends_of_the_numbering_and_digit_order():
    assert space.index_to_ops(0) == (NONE,) * 6 and space.arch_str(0) == NONE0
    assert space.index_to_ops(N - 1) == (POOL,) * 6 and space.arch_str(N - 1) == POOL_ALL
    # the first edge (1<-0) is the most significant digit, the last (3<-2) the least
    assert space.index_to_ops(1) == (0, 0, 0, 0, 0, SKIP)
    assert space.arch_str(1) == "|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"
    assert space.index_to_ops(5**5) == (SKIP, 0, 0, 0, 0, 0)
    assert space.arch_str(5**5) == "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    for e in range(6):
        assert space.index_to_ops(5 ** (5 - e) * CONV1) == tuple(CONV1 if k == e else 0 for k in range(6))


# --- known isomorphisms -----------------------------------------------------------------------


@FAST
@given(op_tuples)
def test_node2_is_dead_when_its_only_consumer_is_none(ops):
    """Edge (3<-2) `none`: the ops on (2<-0) and (2<-1) feed nothing, all 25 variants are one class."""
    base = list(ops)
    base[5] = NONE
    variants = {space.canonical([*base[:1], a, b, *base[3:]]) for a in range(5) for b in range(5)}
    assert len(variants) == 1


@FAST
@given(op_tuples)
def test_edges_out_of_a_zero_node1_do_not_matter(ops):
    """Edge (1<-0) `none`: node 1 is zero, so the ops on (2<-1) and (3<-1) are zero terms."""
    base = list(ops)
    base[0] = NONE
    variants = set()
    for a in range(5):
        for b in range(5):
            v = list(base)
            v[2], v[4] = a, b
            variants.add(space.canonical(v))
    assert len(variants) == 1


@FAST
@given(op_tuples)
def test_skip_into_node1_makes_nodes_0_and_1_symmetric(ops):
    """With (1<-0) = skip_connect node 1 equals node 0, so swapping the ops on (2<-0)/(2<-1) and
    on (3<-0)/(3<-1) gives an isomorphic cell."""
    a = list(ops)
    a[0] = SKIP
    b = [a[0], a[2], a[1], a[4], a[3], a[5]]
    assert space.canonical(a) == space.canonical(b)
    assert space.unique_key(a) == space.unique_key(b)


def test_concrete_isomorphisms_and_non_isomorphisms():
    conv_then_skip = space.to_index(["nor_conv_3x3", "none", "none", "none", "skip_connect", "none"])
    conv_direct = space.to_index(["none", "none", "none", "nor_conv_3x3", "none", "none"])
    assert space.canonical(conv_then_skip) == space.canonical(conv_direct) == conv_direct
    # a different op on a live edge is a different cell
    assert space.canonical(["none"] * 3 + ["nor_conv_1x1", "none", "none"]) != conv_direct
    # without the skip edge, nodes 0 and 1 are not interchangeable
    a = [CONV3, CONV1, POOL, NONE, NONE, SKIP]
    b = [CONV3, POOL, CONV1, NONE, NONE, SKIP]
    assert space.canonical(a) != space.canonical(b)
    # NAS-Bench-201 keeps zero terms: a zero node 2 ('#+#') fed through a conv is not a zero term,
    # so these two zero cells stay apart (this is what makes the count 6,466)
    z1 = [SKIP, NONE, NONE, NONE, NONE, NONE]
    z2 = [SKIP, NONE, NONE, NONE, NONE, CONV3]
    assert space.is_zero_cell(z1) and space.is_zero_cell(z2)
    assert space.canonical(z1) != space.canonical(z2)
    # x + 0 is not x under the kept-zero rule: one vs two incoming zero terms differ
    assert space.canonical([CONV3, NONE, NONE, NONE, SKIP, NONE]) != space.canonical(
        [CONV3, NONE, NONE, NONE, SKIP, SKIP]
    )


def test_is_zero_cell_matches_path_brute_force():
    expected = zero_cells()
    got = np.array([space.is_zero_cell(i) for i in range(N)])
    assert np.array_equal(got, expected)
    assert space.is_zero_cell(0) and space.is_zero_cell(NONE0) and space.is_zero_cell(["none"] * 6)
    assert not space.is_zero_cell(space.EXAMPLE) and not space.is_zero_cell(N - 1)
    # isomorphic cells agree on being zero
    assert np.array_equal(expected[space.canonical_table()], expected)


# --- error messages ---------------------------------------------------------------------------


def _build(groups: list[list[str]]) -> str:
    return "+".join("|" + "|".join(g) + "|" for g in groups)


def _groups(ops) -> list[list[str]]:
    names = [space.OPS[o] for o in ops]
    return [[f"{names[0]}~0"], [f"{names[1]}~0", f"{names[2]}~1"], [f"{names[3]}~0", f"{names[4]}~1", f"{names[5]}~2"]]


POSITIONS = [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]  # (group, source) of each edge


@FAST
@given(op_tuples, st.integers(0, 5), plain_text.filter(lambda t: t not in space.OP_INDEX))
def test_unknown_op_name_is_named(ops, edge, bad):
    groups = _groups(ops)
    g, src = POSITIONS[edge]
    groups[g][src] = f"{bad}~{src}"
    assert_bad(space.parse, _build(groups), needles=("unknown op", repr(bad)))


@FAST
@given(op_tuples, st.integers(0, 2), st.integers(1, 5), st.data())
def test_wrong_number_of_edges_per_node(ops, g, count, data):
    node = g + 1
    if count == node:
        count += 1
    groups = _groups(ops)
    groups[g] = [f"{data.draw(st.sampled_from(space.OPS))}~{k}" for k in range(count)]
    assert_bad(space.parse, _build(groups), needles=(f"node {node}", f"has {count} incoming edges"))


@FAST
@given(op_tuples, st.lists(st.integers(0, 2), min_size=1, max_size=6).filter(lambda x: len(x) != 3))
def test_wrong_number_of_plus_groups(ops, picks):
    groups = _groups(ops)
    s = _build([groups[p] for p in picks])
    assert_bad(space.parse, s, needles=(f"has {len(picks)} node groups", "expected 3"))


@FAST
@given(op_tuples, st.integers(0, 5), st.sampled_from(["", "-", ":", "=", "@", " ", ".", "~~", "_"]))
def test_bad_tilde_separator_names_the_token(ops, edge, sep):
    groups = _groups(ops)
    g, src = POSITIONS[edge]
    token = groups[g][src].replace("~", sep)
    groups[g][src] = token
    assert_bad(space.parse, _build(groups), needles=(repr(token), "op~input"))


@FAST
@given(op_tuples, st.sampled_from([0, 1]), st.sampled_from(["", ",", ";", " ", "|", "||", "-"]))
def test_bad_plus_separator(ops, which, sep):
    s = _build(_groups(ops))
    pos = [k for k, c in enumerate(s) if c == "+"][which]
    bad = s[:pos] + sep + s[pos + 1 :]
    assert_bad(space.parse, bad, needles=("node groups", "expected 3"))


@FAST
@given(op_tuples, st.sampled_from([1, 2]), st.sampled_from([",", ";", " ", "/", ""]), st.data())
def test_bad_pipe_between_edges(ops, g, sep, data):
    groups = _groups(ops)
    node = g + 1
    k = data.draw(st.integers(0, node - 2))
    inner = "|".join(groups[g][: k + 1]) + sep + "|".join(groups[g][k + 1 :])
    s = "+".join(["|" + "|".join(x) + "|" if i != g else "|" + inner + "|" for i, x in enumerate(groups)])
    assert_bad(space.parse, s, needles=(f"node {node}", f"has {node - 1} incoming edges"))


@FAST
@given(
    op_tuples,
    st.integers(0, 5),
    st.one_of(
        st.integers(0, 10**6).map(str),
        plain_text,
        st.sampled_from(["01", "00", "1 ", " 0", "\u0661", "\u0660", "1" * 5000]),
    ),
)
@example((0,) * 6, 5, "2\n")
def test_wrong_input_id_names_the_token(ops, edge, inp):
    g, src = POSITIONS[edge]
    if inp == str(src):
        inp = str(src + 1)
    groups = _groups(ops)
    token = f"{space.OPS[ops[edge]]}~{inp}"
    groups[g][src] = token
    assert_bad(space.parse, _build(groups), needles=("names input", repr(token), f"expected {src}"))


@FAST
@given(op_tuples, st.sampled_from(["first", "last", "before_plus", "after_plus", "all"]))
def test_missing_pipes(ops, where):
    s = _build(_groups(ops))
    plus = s.index("+")
    bad = {
        "first": s[1:],
        "last": s[:-1],
        "before_plus": s[: plus - 1] + s[plus:],
        "after_plus": s[: plus + 1] + s[plus + 2 :],
        "all": s.replace("|", ""),
    }[where]
    msg = assert_bad(space.parse, bad)
    if where in ("first", "last", "all"):
        assert "must start and end with '|'" in msg
    else:
        assert "must be enclosed in '|'" in msg


@FAST
@given(st.text(max_size=200))
@example("")
@example("|")
@example("+")
@example("||+||+||")
def test_random_text_is_rejected_with_example(text):
    if text.strip() in VALID_STRS:
        assert space.to_str(space.parse(text)) == text.strip()
        return
    assert_bad(space.parse, text)
    assert_bad(space.to_index, text)


@FAST
@given(indices, st.integers(0, 200), st.sampled_from(["insert", "delete", "replace"]), st.characters())
@example(0, 7, "insert", "\n")  # '|none~0\n|+...': a regex '$' would accept it
@example(11791, 93, "replace", "\u0662")  # '~\u0662': a non-ASCII digit as an input id
@example(11791, 46, "insert", "0")  # '~01': a leading zero
def test_near_valid_strings_either_fail_cleanly_or_round_trip_exactly(i, pos, kind, ch):
    s = space.arch_str(i)
    pos %= len(s)
    bad = {"insert": s[:pos] + ch + s[pos:], "delete": s[:pos] + s[pos + 1 :], "replace": s[:pos] + ch + s[pos + 1 :]}[
        kind
    ]
    try:
        ops = space.parse(bad)
    except ValueError as exc:
        assert space.EXAMPLE in str(exc)
    else:
        # anything accepted is exactly a valid string, up to surrounding whitespace
        assert space.to_str(ops) == bad.strip()


out_of_range = st.one_of(st.integers(max_value=-1), st.integers(min_value=N))


@FAST
@given(out_of_range)
@example(-1)
@example(N)
@example(2**70)
def test_out_of_range_indices(i):
    for fn in (
        space.to_index,
        space.index_to_ops,
        space.check_index,
        space.canonical,
        space.arch_str,
        space.to_ops,
        space.is_zero_cell,
        space.neighbours,
        space.adjacency,
    ):
        assert_bad(fn, i, needles=(str(i), "out of range"))
    if -(2**63) <= i < 2**63:
        assert_bad(space.to_index, np.int64(i), needles=(str(i), "out of range"))
        assert_bad(space.ops_matrix, np.array([0, i], dtype=np.int64), needles=(str(i), "out of range"))
        assert_bad(space.one_hot, np.array([i, 1], dtype=np.int64), needles=(str(i), "out of range"))


wrong_types = st.one_of(
    st.floats(),
    st.none(),
    st.booleans(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.sets(st.integers(), max_size=3),
    st.binary(max_size=5),
    st.complex_numbers(),
    st.sampled_from([np.float64(3.0), np.bool_(True), object(), 1.0, 0.0, {"ops": [0] * 6}]),
)


@FAST
@given(wrong_types)
def test_wrong_types(value):
    name = type(value).__name__
    for fn in (
        space.to_index,
        space.to_ops,
        space.canonical,
        space.arch_str,
        space.is_zero_cell,
        space.neighbours,
        space.adjacency,
        space.check_index,
        space.parse,
    ):
        assert_bad(fn, value, needles=(name,))
    assert_bad(space.mutate, value, np.random.default_rng(0), needles=(name,))


op_entries = st.one_of(st.integers(0, 4), st.sampled_from(space.OPS))


@FAST
@given(st.lists(op_entries, max_size=12).filter(lambda x: len(x) != 6), st.sampled_from([list, tuple]))
def test_op_lists_of_the_wrong_length(entries, kind):
    seq = kind(entries)
    for fn in (space.to_ops, space.to_index, space.ops_to_index, space.to_str, space.canonical):
        assert_bad(fn, seq, needles=(f"has {len(entries)} entries", "expected 6"))


bad_entries = st.one_of(
    plain_text.filter(lambda t: t not in space.OP_INDEX),
    st.integers().filter(lambda v: not 0 <= v <= 4),
    st.floats(),
    st.none(),
    st.booleans(),
    st.just(np.float64(1.0)),
    st.just(np.int64(5)),
)


@FAST
@given(op_tuples, st.integers(0, 5), bad_entries)
@example((0,) * 6, 0, -1)  # to_str used to index OPS[-1] and print 'avg_pool_3x3'
@example((0,) * 6, 0, 5)  # ops_to_index used to return 15625
def test_op_lists_with_unknown_entries(ops, pos, bad):
    seq = list(ops)
    seq[pos] = bad
    for fn in (space.to_ops, space.to_index, space.ops_to_index, space.to_str, space.canonical, space.is_zero_cell):
        assert_bad(fn, seq, needles=(repr(bad),))
        assert_bad(fn, tuple(seq), needles=(repr(bad),))


def test_misshapen_inputs():
    assert_bad(space.to_ops, np.zeros((2, 3), dtype=int), needles=("shape (2, 3)",))
    assert_bad(space.to_ops, np.array(3), needles=("shape ()",))
    for single in (5, space.EXAMPLE, np.int64(5), np.array(5), None):
        assert_bad(space.ops_matrix, single, needles=("sequence of architectures",))
    assert_bad(space.ops_matrix, [0, "|bad~0|"], needles=("'|bad~0|'",))
    assert space.ops_matrix([]).shape == (0, 6)


# --- neighbourhoods and sampling -------------------------------------------------------------


@FAST
@given(indices)
@example(0)
@example(N - 1)
def test_neighbours(i):
    nb = space.neighbours(i)
    assert len(nb) == 24 == len(set(nb)) and i not in nb
    assert all(isinstance(j, int) for j in nb)
    diff = space.ops_matrix(np.array(nb)) != ALL_OPS[i]
    assert np.all(diff.sum(axis=1) == 1)
    assert np.all(diff.sum(axis=0) == 4)  # four other ops on each of the six edges
    hamming1 = np.flatnonzero((ALL_OPS != ALL_OPS[i]).sum(axis=1) == 1)
    assert sorted(nb) == hamming1.tolist()
    assert space.neighbours(space.arch_str(i)) == nb


@FAST
@given(indices, st.integers(0, 2**32 - 1))
def test_mutate_changes_one_edge_and_is_reproducible(i, seed):
    j = space.mutate(i, np.random.default_rng(seed))
    assert j == space.mutate(i, np.random.default_rng(seed))
    assert j == space.mutate(space.arch_str(i), np.random.default_rng(seed))
    assert (ALL_OPS[j] != ALL_OPS[i]).sum() == 1
    assert j in space.neighbours(i)


def test_mutate_reaches_every_neighbour():
    rng = np.random.default_rng(1234)
    seen = {space.mutate(space.EXAMPLE, rng) for _ in range(2000)}
    assert seen == set(space.neighbours(space.EXAMPLE))


def test_sample():
    table = space.canonical_table()
    s = space.sample(np.random.default_rng(7), 2000, canonical_only=True)
    assert s.shape == (2000,) and s.dtype == np.int64
    assert np.array_equal(table[s], s)
    assert np.array_equal(s, space.sample(np.random.default_rng(7), 2000, canonical_only=True))
    one = space.sample(np.random.default_rng(3), canonical_only=True)
    assert isinstance(one, int) and table[one] == one
    t = space.sample(np.random.default_rng(7), 2000)
    assert t.min() >= 0 and t.max() < N
    assert np.any(table[t] != t)  # the unrestricted sampler does draw non-canonical cells
    assert space.sample(np.random.default_rng(0), 0).shape == (0,)


# --- encodings --------------------------------------------------------------------------------


def test_one_hot_for_every_index():
    enc = space.one_hot(ALL)
    assert enc.shape == (N, 30) and enc.dtype == np.float32
    assert set(np.unique(enc).tolist()) == {0.0, 1.0}
    assert np.all(enc.sum(axis=1) == 6)
    blocks = enc.reshape(N, 6, 5)
    assert np.all(blocks.sum(axis=2) == 1)
    assert np.array_equal(blocks.argmax(axis=2), ALL_OPS)  # column 5*e + op
    assert np.unique(enc, axis=0).shape[0] == N
    some = ALL[::131]
    assert np.array_equal(space.one_hot([ALL_STRS[i] for i in some]), enc[some])
    assert np.array_equal(space.one_hot([list(ALL_OPS[i]) for i in some]), enc[some])


def _expected_adjacency() -> np.ndarray:
    """From the definition: graph node k+1 is edge k; edge (dst<-src) reads node src, which is the
    input (graph node 0) or the sum of the edges into src; the output reads the edges into node 3."""
    adj = np.zeros((8, 8), dtype=np.float32)
    for k, (_, src) in enumerate(space.EDGES):
        feeders = [0] if src == 0 else [m + 1 for m, (d, _) in enumerate(space.EDGES) if d == src]
        adj[feeders, k + 1] = 1
    adj[[m + 1 for m, (d, _) in enumerate(space.EDGES) if d == 3], 7] = 1
    return adj


def _reachable(adj: np.ndarray) -> np.ndarray:
    reach = np.eye(len(adj), dtype=bool) | (adj > 0)
    for _ in range(len(adj)):
        reach = reach | ((reach.astype(int) @ reach.astype(int)) > 0)
    return reach


@FAST
@given(indices)
@example(0)
@example(11791)
def test_adjacency(i):
    adj, feats = space.adjacency(i)
    assert adj.shape == (8, 8) and feats.shape == (8, 7)
    assert adj.dtype == np.float32 and feats.dtype == np.float32
    assert set(np.unique(adj).tolist()) <= {0.0, 1.0}
    assert np.array_equal(adj, np.triu(adj, k=1))  # a DAG in topological order, no self loops
    assert np.array_equal(adj, _expected_adjacency())
    assert np.all(feats.sum(axis=1) == 1)  # one feature per node
    assert feats[0, 0] == 1 and feats[7, 1] == 1
    assert np.all(feats[1:7, :2] == 0)  # op nodes carry exactly one op feature
    assert np.array_equal(feats[1:7, 2:].argmax(axis=1), ALL_OPS[i])
    assert _reachable(adj)[0, 7]
    a2, f2 = space.adjacency(space.arch_str(i))
    assert np.array_equal(a2, adj) and np.array_equal(f2, feats)


def test_adjacency_when_node3_inputs_are_all_none():
    ops = [CONV3, SKIP, POOL, NONE, NONE, NONE]
    assert space.is_zero_cell(ops)
    adj, feats = space.adjacency(ops)
    assert adj.shape == (8, 8) and feats.shape == (8, 7)
    assert np.array_equal(adj[:, 7], np.array([0, 0, 0, 0, 1, 1, 1, 0], dtype=np.float32))
    assert np.all(feats[4:7, 2 + NONE] == 1)  # the three edges into node 3 are 'none' op nodes
    assert _reachable(adj)[0, 7]  # the encoding is structural: the output is still wired up
