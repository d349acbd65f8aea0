# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""One pass over untrusted node columns: validate every tree and lay it out for sklearn.

The numpy version of these checks (treeshard.validate) takes about ten
passes over the nodes; this kernel does them, computes every node's depth
and writes sklearn's node records in a single pass, ~10x faster. Every array
index below is checked against its bounds before use: the point of this code
is to reject input that would make sklearn's own traversal read out of bounds.
"""

from libc.float cimport FLT_MAX
from libc.math cimport INFINITY, isnan, nextafterf, rint
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy
from cpython.buffer cimport PyBUF_RECORDS_RO, PyBuffer_IsContiguous, PyBuffer_Release, PyObject_GetBuffer

# Error codes, mapped to messages by treeshard.validate.
cpdef enum Problem:
    OK = 0
    ONE_CHILD = 1
    CYCLE = 2
    CHILD_OUT_OF_RANGE = 3
    SHARED_CHILD = 4
    ORPHAN = 5
    FEATURE_OUT_OF_RANGE = 6
    LEAF_FEATURE = 7
    NAN_THRESHOLD = 8
    MISSING_GO_TO_LEFT = 9
    BAD_TREE_PTR = 10


cdef struct Offsets:
    int64_t left, right, feature, threshold, impurity, samples, weighted, missing


cdef Offsets _record_offsets(tuple offsets, Py_ssize_t width) except *:
    """The 8 field offsets of a node record of ``width`` bytes, checked to fit (-1: no such field)."""
    cdef Offsets o
    cdef int64_t field
    if len(offsets) != 8:
        raise ValueError("expected 8 record offsets")
    for k, field in enumerate(offsets):
        if field < -1 or (field >= 0 and field + (1 if k == 7 else 8) > width):
            raise ValueError("record offsets do not fit the record size")
    o.left, o.right, o.feature, o.threshold = offsets[0], offsets[1], offsets[2], offsets[3]
    o.impurity, o.samples, o.weighted, o.missing = offsets[4], offsets[5], offsets[6], offsets[7]
    return o


cdef int _check_scratch(Py_ssize_t n, int32_t** depth, uint8_t** seen) except -1:
    """The per-node depth and seen-flag arrays :func:`_check` writes (freed by the caller)."""
    depth[0] = <int32_t*> calloc(n if n > 0 else 1, sizeof(int32_t))
    seen[0] = <uint8_t*> calloc(n if n > 0 else 1, sizeof(uint8_t))
    if depth[0] == NULL or seen[0] == NULL:
        free(depth[0])
        free(seen[0])
        raise MemoryError()
    return 0


cdef int _check(
    const int64_t* tree_ptr, Py_ssize_t n_trees, Py_ssize_t n,
    const int32_t* left, const int32_t* right, const int32_t* feature, const double* threshold,
    const double* impurity, const int64_t* n_node_samples, const double* weighted_n_node_samples,
    const uint8_t* missing_go_to_left, int64_t n_features,
    uint8_t* records, Py_ssize_t width, Offsets o, int64_t* max_depth,
    int32_t* depth, uint8_t* seen, Py_ssize_t* bad,
) noexcept nogil:
    cdef Py_ssize_t t, i, start, stop, children
    cdef int64_t lo, ro, l, r, f, deepest
    cdef uint8_t* rec
    for t in range(n_trees):
        start = tree_ptr[t]
        stop = tree_ptr[t + 1]
        bad[0] = start
        if stop <= start or start < 0 or stop > n:
            return BAD_TREE_PTR
        children = 0
        deepest = 0
        for i in range(start, stop):
            bad[0] = i
            lo = left[i]
            ro = right[i]
            rec = records + i * width
            if lo == 0 or ro == 0:
                if lo != ro:
                    return ONE_CHILD
                if feature[i] != -2:
                    return LEAF_FEATURE
                l = -1
                r = -1
            else:
                if lo < 1 or ro < 1:
                    return CYCLE
                if i + lo >= stop or i + ro >= stop:
                    return CHILD_OUT_OF_RANGE
                if seen[i + lo] or seen[i + ro] or lo == ro:
                    return SHARED_CHILD
                seen[i + lo] = 1
                seen[i + ro] = 1
                depth[i + lo] = depth[i] + 1
                depth[i + ro] = depth[i] + 1
                if depth[i] + 1 > deepest:
                    deepest = depth[i] + 1
                children += 2
                f = feature[i]
                if f < 0 or f >= n_features:
                    return FEATURE_OUT_OF_RANGE
                if isnan(threshold[i]):
                    return NAN_THRESHOLD
                l = i + lo - start
                r = i + ro - start
            if missing_go_to_left[i] > 1:
                return MISSING_GO_TO_LEFT
            if o.left >= 0:
                (<int64_t*> (rec + o.left))[0] = l
            if o.right >= 0:
                (<int64_t*> (rec + o.right))[0] = r
            if o.feature >= 0:
                (<int64_t*> (rec + o.feature))[0] = feature[i]
            if o.threshold >= 0:
                (<double*> (rec + o.threshold))[0] = threshold[i]
            if o.impurity >= 0:
                (<double*> (rec + o.impurity))[0] = impurity[i]
            if o.samples >= 0:
                (<int64_t*> (rec + o.samples))[0] = n_node_samples[i]
            if o.weighted >= 0:
                (<double*> (rec + o.weighted))[0] = weighted_n_node_samples[i]
            if o.missing >= 0:
                rec[o.missing] = missing_go_to_left[i]
        # Each child was seen once and children come after their parents: the
        # tree is proper iff every node but the root has been seen.
        if children != stop - start - 1:
            for i in range(start + 1, stop):
                if not seen[i]:
                    bad[0] = i
                    return ORPHAN
            bad[0] = start
            return ORPHAN
        max_depth[t] = deepest
    bad[0] = -1
    return OK


def check_and_layout(
    const int64_t[::1] tree_ptr,
    const int32_t[::1] left,
    const int32_t[::1] right,
    const int32_t[::1] feature,
    const double[::1] threshold,
    const double[::1] impurity,
    const int64_t[::1] n_node_samples,
    const double[::1] weighted_n_node_samples,
    const uint8_t[::1] missing_go_to_left,
    int64_t n_features,
    uint8_t[:, ::1] records,
    int64_t[::1] max_depth,
    tuple offsets,
):
    """Validate trees ``tree_ptr`` and fill ``records`` (sklearn's NODE_DTYPE bytes) and ``max_depth``.

    ``offsets`` are the byte offsets of (left_child, right_child, feature,
    threshold, impurity, n_node_samples, weighted_n_node_samples,
    missing_go_to_left) in a record (8-byte int/float fields and a 1-byte
    flag), or -1 for a field the record lacks. Returns ``(code, node)``:
    ``(0, -1)`` when every tree is valid, else the first problem found and
    its global node index.
    """
    cdef Py_ssize_t n = left.shape[0]
    cdef Py_ssize_t n_trees = tree_ptr.shape[0] - 1
    cdef Py_ssize_t width = records.shape[1]
    cdef Py_ssize_t bad = -1
    cdef int code
    cdef Offsets o
    cdef int32_t* depth
    cdef uint8_t* seen
    if (right.shape[0] != n or feature.shape[0] != n or threshold.shape[0] != n or impurity.shape[0] != n
            or n_node_samples.shape[0] != n or weighted_n_node_samples.shape[0] != n
            or missing_go_to_left.shape[0] != n or records.shape[0] != n or max_depth.shape[0] != n_trees
            or n_trees < 1 or tree_ptr[0] != 0 or tree_ptr[n_trees] != n):
        return BAD_TREE_PTR, -1
    o = _record_offsets(offsets, width)
    _check_scratch(n, &depth, &seen)
    with nogil:
        code = _check(
            &tree_ptr[0], n_trees, n, &left[0], &right[0], &feature[0], &threshold[0], &impurity[0],
            &n_node_samples[0], &weighted_n_node_samples[0], &missing_go_to_left[0], n_features,
            &records[0, 0], width, o, &max_depth[0], depth, seen, &bad,
        )
    free(depth)
    free(seen)
    return code, bad


# --------------------------------------------------------------------------- traversal
# The flat predictor's engine (treeshard.predictor). Its node table holds one
# 16-byte record per node of already validated trees (check_and_layout above):
# the split threshold rounded down to float32 (x <= t in float64 exactly when
# x <= that float32, for a float32 x), the feature (0 at a leaf: any readable
# column) and the two child offsets relative to the node (0 at a leaf).
#
# Walking a tree is a chain of dependent loads, mostly cache misses on a large
# forest. So `group` (tree, row) pairs walk at once, interleaved: their loads
# are independent and overlap in memory; a pair that reaches its leaf hands its
# slot to the next pair (_walk_pairs). Pairs come tree-major over a block of
# rows, so a tree stays in cache while the block walks it; with few rows, the
# walks span trees. Shallow models (every tree at most `depth` deep, known from
# validation) take a shorter path: LEVEL_GROUP rows go exactly `depth` steps
# down a tree in a fixed-size loop the compiler unrolls (_walk_levels). The
# choice of child is branch-free: the comparison is a coin toss that a branch
# would often mispredict. Sums are added afterwards, each row's leaf values in
# tree order, as sklearn does.

cdef enum:
    MAX_GROUP = 32

cdef struct Node:
    float threshold
    int32_t feature
    int32_t left
    int32_t right


cdef void _walk_pairs(
    const float* X, Py_ssize_t n_features, const Node* nodes, const uint8_t* nan_right,
    const int64_t* roots, Py_ssize_t n_trees, Py_ssize_t start, Py_ssize_t stop, int64_t* leaves, Py_ssize_t stride,
    Py_ssize_t group,
) noexcept nogil:
    """``leaves[t * stride + r - start]``: the leaf row ``r`` of ``X`` reaches in tree ``t``, for rows ``start:stop``."""
    cdef int64_t node[MAX_GROUP]
    cdef const float* x[MAX_GROUP]
    cdef int64_t* slot[MAX_GROUP]  # where the slot's leaf goes
    cdef Py_ssize_t rows = stop - start
    cdef Py_ssize_t t = 0, r = 0  # the next pair to start
    cdef Py_ssize_t m = 0, j, i
    cdef const Node* nd
    cdef float v
    cdef int32_t step
    cdef bint right
    if rows <= 0:
        return
    while m < group and t < n_trees:
        node[m] = roots[t]
        x[m] = X + (start + r) * n_features
        slot[m] = leaves + t * stride + r
        m += 1
        r += 1
        if r == rows:
            r = 0
            t += 1
    while m > 0:
        j = 0
        while j < m:
            i = node[j]
            nd = nodes + i
            v = x[j][nd.feature]
            # NaN compares False and goes right unless missing_go_to_left: rare, so a branch.
            right = not (v <= nd.threshold)
            if v != v:
                right = nan_right[i]
            step = nd.left + ((nd.right - nd.left) & -(<int32_t> right))
            if step != 0:
                node[j] = i + step
                j += 1
                continue
            slot[j][0] = i  # at a leaf (offsets 0): the slot takes the next pair, or the last slot's
            if t < n_trees:
                node[j] = roots[t]
                x[j] = X + (start + r) * n_features
                slot[j] = leaves + t * stride + r
                r += 1
                if r == rows:
                    r = 0
                    t += 1
                j += 1
            else:
                m -= 1
                node[j], x[j], slot[j] = node[m], x[m], slot[m]


cdef enum:
    LEVEL_GROUP = 8


cdef inline void _levels_fixed(
    const Node* nodes, const uint8_t* nan_right, int64_t root, const float* x, Py_ssize_t n_features,
    Py_ssize_t depth, int64_t* leaves,
) noexcept nogil:
    cdef int64_t node[LEVEL_GROUP]
    cdef Py_ssize_t j, d, i
    cdef const Node* nd
    cdef float v
    cdef bint right
    for j in range(LEVEL_GROUP):
        node[j] = root
    for d in range(depth):
        for j in range(LEVEL_GROUP):
            i = node[j]
            nd = nodes + i
            v = x[j * n_features + nd.feature]
            right = not (v <= nd.threshold)
            if v != v:
                right = nan_right[i]
            node[j] = i + nd.left + ((nd.right - nd.left) & -(<int32_t> right))
    for j in range(LEVEL_GROUP):
        leaves[j] = node[j]


cdef void _walk_levels(
    const float* X, Py_ssize_t n_features, const Node* nodes, const uint8_t* nan_right,
    const int64_t* roots, Py_ssize_t n_trees, Py_ssize_t start, Py_ssize_t stop, int64_t* leaves, Py_ssize_t stride,
    Py_ssize_t group, Py_ssize_t depth,
) noexcept nogil:
    """As :func:`_walk_pairs`, for trees no deeper than ``depth``: ``group`` rows take exactly
    ``depth`` steps down a tree in lockstep (a step from a leaf stays there), with no test
    for leaves and no hand-over: the shorter code path for shallow trees."""
    cdef int64_t node[MAX_GROUP]
    cdef const float* x
    cdef Py_ssize_t t, r, m, j, d, i
    cdef const Node* nd
    cdef float v
    cdef bint right
    for t in range(n_trees):
        r = start
        while r + LEVEL_GROUP <= stop:  # full groups: a fixed count the compiler unrolls into registers
            _levels_fixed(nodes, nan_right, roots[t], X + r * n_features, n_features, depth, leaves + t * stride + r - start)
            r += LEVEL_GROUP
        while r < stop:
            m = min(group, stop - r)
            x = X + r * n_features
            for j in range(m):
                node[j] = roots[t]
            for d in range(depth):
                for j in range(m):
                    i = node[j]
                    nd = nodes + i
                    v = x[j * n_features + nd.feature]
                    right = not (v <= nd.threshold)
                    if v != v:
                        right = nan_right[i]
                    node[j] = i + nd.left + ((nd.right - nd.left) & -(<int32_t> right))
            for j in range(m):
                leaves[t * stride + r - start + j] = node[j]
            r += m


cdef void _walk(
    const float* X, Py_ssize_t n_features, const Node* nodes, const uint8_t* nan_right,
    const int64_t* roots, Py_ssize_t n_trees, Py_ssize_t start, Py_ssize_t stop, int64_t* leaves, Py_ssize_t stride,
    Py_ssize_t group, Py_ssize_t depth,
) noexcept nogil:
    if depth > 0 and stop - start >= LEVEL_GROUP:  # fewer rows: walks across trees overlap better
        _walk_levels(X, n_features, nodes, nan_right, roots, n_trees, start, stop, leaves, stride, group, depth)
    else:
        _walk_pairs(X, n_features, nodes, nan_right, roots, n_trees, start, stop, leaves, stride, group)


cdef void _add_values(
    const int64_t* leaves, Py_ssize_t n_trees, Py_ssize_t first_tree, Py_ssize_t rows, const double* value,
    const int32_t* counts, const double* weights, Py_ssize_t width, double scale, Py_ssize_t k, double* out,
) noexcept nogil:
    """``out[r] += scale * value[leaves[t * rows + r]]`` for each tree ``t`` in order; tree ``t``
    is tree ``first_tree + t`` of the model, whose values go to column group ``(first_tree + t) % k``."""
    cdef Py_ssize_t t, r, c, leaf
    cdef Py_ssize_t out_width = k * width
    cdef double* acc
    cdef Py_ssize_t group_offset
    for t in range(n_trees):
        group_offset = ((first_tree + t) % k) * width  # once a tree: a division per row would cost more than the add
        for r in range(rows):
            leaf = leaves[t * rows + r]
            acc = out + r * out_width + group_offset
            if counts == NULL:
                for c in range(width):
                    acc[c] += scale * value[leaf * width + c]
            else:  # value_encoding "weighted_counts": the division a load would do, at the leaf
                for c in range(width):
                    acc[c] += scale * (<double> counts[leaf * width + c] / weights[leaf])


cdef inline float _round_down(double t) noexcept nogil:
    """The largest float32 not above ``t`` (not NaN): ``x <= t`` iff ``x <= result`` for a float32 ``x``."""
    cdef float f
    if t > FLT_MAX:  # out of float32's range (converting it would be undefined behaviour in C)
        return INFINITY if t == INFINITY else FLT_MAX
    if t < -FLT_MAX:
        return -INFINITY
    f = <float> t
    if f > t:
        f = nextafterf(f, -INFINITY)
    return f


def pack_nodes(
    const double[::1] threshold,
    const int32_t[::1] feature,
    const int32_t[::1] left,
    const int32_t[::1] right,
    const uint8_t[::1] missing_go_to_left,
    int32_t[:, ::1] nodes,
    uint8_t[::1] nan_right,
):
    """Fill the traversal's node table from validated node columns, in one pass: ``nodes[i]`` =
    (threshold rounded down to float32, as bits; feature, 0 at a leaf; left and right child
    offsets) and ``nan_right[i]`` = not ``missing_go_to_left[i]``."""
    cdef Py_ssize_t n = threshold.shape[0]
    cdef Py_ssize_t i
    cdef Node* out
    if (feature.shape[0] != n or left.shape[0] != n or right.shape[0] != n or missing_go_to_left.shape[0] != n
            or nodes.shape[0] != n or nodes.shape[1] != 4 or nan_right.shape[0] != n):
        raise ValueError("node columns and table: expected n_nodes rows each, 4 fields a record")
    if n == 0:
        return
    out = <Node*> &nodes[0, 0]
    with nogil:
        for i in range(n):
            out[i].threshold = _round_down(threshold[i])
            out[i].feature = feature[i] if feature[i] >= 0 else 0
            out[i].left = left[i]
            out[i].right = right[i]
            nan_right[i] = missing_go_to_left[i] == 0


cdef int _check_table(
    const float[:, ::1] X, const int32_t[:, ::1] nodes, const uint8_t[::1] nan_right, const int64_t[::1] roots,
    Py_ssize_t start, Py_ssize_t stop,
) except -1:
    if nodes.shape[1] != 4 or nan_right.shape[0] != nodes.shape[0]:
        raise ValueError("node table: expected (n_nodes, 4) records and n_nodes NaN flags")
    if not 0 <= start <= stop <= X.shape[0]:
        raise ValueError("row range outside X")
    for t in range(roots.shape[0]):
        if not 0 <= roots[t] < nodes.shape[0]:
            raise ValueError("tree root outside the node table")
    return 0


def traverse_leaves(
    const float[:, ::1] X,
    const int32_t[:, ::1] nodes,
    const uint8_t[::1] nan_right,
    const int64_t[::1] roots,
    int64_t[:, ::1] out,
    Py_ssize_t start,
    Py_ssize_t stop,
    Py_ssize_t block_rows,
    Py_ssize_t group,
    Py_ssize_t depth,
):
    """Write the leaf (global node id) that rows ``start:stop`` of ``X`` reach in each tree
    into ``out[tree, row]``, ``block_rows`` rows through every tree at a time, ``group``
    walks interleaved (at most 32), without the GIL. With ``depth`` > 0, no tree is deeper
    than ``depth`` and every walk takes exactly ``depth`` steps.

    ``nodes`` is the node table described above, of trees that passed
    :func:`check_and_layout`, and ``X`` has every feature those trees split on.
    """
    _check_table(X, nodes, nan_right, roots, start, stop)
    if out.shape[0] != roots.shape[0] or out.shape[1] != X.shape[0]:
        raise ValueError("out: expected (n_trees, n_rows)")
    if start == stop or roots.shape[0] == 0:
        return
    cdef Py_ssize_t first, last
    cdef Py_ssize_t block = max(1, block_rows)
    group = max(1, min(group, MAX_GROUP))
    with nogil:
        first = start
        while first < stop:
            last = min(stop, first + block)
            _walk(
                &X[0, 0], X.shape[1], <const Node*> &nodes[0, 0], &nan_right[0], &roots[0], roots.shape[0],
                first, last, &out[0, first], X.shape[0], group, depth,
            )
            first = last


def traverse_sum(
    const float[:, ::1] X,
    const int32_t[:, ::1] nodes,
    const uint8_t[::1] nan_right,
    const int64_t[::1] roots,
    const double[:, ::1] value,
    const int32_t[:, ::1] counts,
    const double[::1] weights,
    double scale,
    Py_ssize_t k,
    double[:, ::1] out,
    Py_ssize_t start,
    Py_ssize_t stop,
    Py_ssize_t block_rows,
    Py_ssize_t group,
    Py_ssize_t depth,
    Py_ssize_t buffer_pairs,
):
    """Add ``scale * value[leaf]`` of every tree, in tree order, to ``out[row]`` for rows
    ``start:stop``; tree ``t`` adds to the ``t % k``-th group of ``value.shape[1]``
    columns (``k`` trees per boosting stage; 1 for a forest). Without the GIL.

    A block of ``block_rows`` rows walks as many consecutive trees at once as
    ``buffer_pairs`` leaf ids hold (at least one tree), then adds their values;
    ``group`` and ``depth`` as in :func:`traverse_leaves`.
    With ``value`` of zero rows, a leaf's value is ``counts[leaf] / weights[leaf]``
    (value_encoding "weighted_counts"). ``out`` holds the starting values (zeros, or
    gradient boosting's init prediction); each row's sum is the same left fold as
    ``np.add.accumulate`` over trees and as sklearn's ``predict_stages``.
    """
    _check_table(X, nodes, nan_right, roots, start, stop)
    cdef Py_ssize_t n_nodes = nodes.shape[0]
    cdef bint by_counts = value.shape[0] == 0
    cdef Py_ssize_t width = counts.shape[1] if by_counts else value.shape[1]
    if by_counts and (counts.shape[0] != n_nodes or weights.shape[0] != n_nodes):
        raise ValueError("counts and weights: expected one row per node")
    if not by_counts and value.shape[0] != n_nodes:
        raise ValueError("value: expected one row per node")
    if k < 1 or out.shape[0] != X.shape[0] or out.shape[1] != k * width:
        raise ValueError("out: expected (n_rows, k * width)")
    if start == stop or roots.shape[0] == 0 or width == 0:
        return
    cdef const double* value_ptr = NULL if by_counts else &value[0, 0]
    cdef const int32_t* counts_ptr = &counts[0, 0] if by_counts else NULL
    cdef const double* weights_ptr = &weights[0] if by_counts else NULL
    cdef Py_ssize_t n_trees = roots.shape[0]
    cdef Py_ssize_t block = max(1, min(block_rows, stop - start))
    cdef Py_ssize_t chunk = max(1, min(n_trees, buffer_pairs // block))  # trees walked at once
    cdef Py_ssize_t first, last, tree, trees
    cdef int64_t* leaves = <int64_t*> malloc(chunk * block * sizeof(int64_t))
    if leaves == NULL:
        raise MemoryError()
    group = max(1, min(group, MAX_GROUP))
    with nogil:
        first = start
        while first < stop:
            last = min(stop, first + block)
            tree = 0
            while tree < n_trees:
                trees = min(chunk, n_trees - tree)
                _walk(
                    &X[0, 0], X.shape[1], <const Node*> &nodes[0, 0], &nan_right[0], &roots[tree], trees,
                    first, last, leaves, last - first, group, depth,
                )
                _add_values(leaves, trees, tree, last - first, value_ptr, counts_ptr, weights_ptr, width, scale, k, &out[first, 0])
                tree += trees
            first = last
    free(leaves)


# --------------------------------------------------------------------------- complete layout
# Shallow trees (depth <= COMPLETE_MAX_DEPTH) padded to a perfect binary tree of the model's
# depth D, breadth first: the children of slot i are 2i+1 (left) and 2i+2 (right), so a walk
# is D steps of ``i = 2i + 1 + right`` with no child offsets to load and no leaf test. A leaf
# above the bottom level becomes a split that sends every row left (threshold +inf, NaN
# left) down to the bottom, where each of the 2^D leaf slots holds the real leaf it stands
# for: its node id and its value row. Every row thus ends at the leaf sklearn reaches.

cdef enum:
    COMPLETE_MAX_DEPTH = 10

cdef struct Slot:
    float threshold
    uint32_t split  # feature << 1 | NaN goes right


def pack_complete(
    const int32_t[:, ::1] nodes,
    const uint8_t[::1] nan_right,
    const int64_t[::1] roots,
    Py_ssize_t depth,
    const double[:, ::1] value,
    const int32_t[:, ::1] counts,
    const double[::1] weights,
    uint32_t[:, ::1] slots,
    int64_t[:, ::1] leaf_ids,
    double[:, :, ::1] leaf_values,
):
    """Lay out trees ``roots`` of the node table (see :func:`pack_nodes`) as perfect trees of
    ``depth`` levels: ``slots[t]`` the ``2^depth - 1`` splits of tree ``t`` (threshold bits,
    feature << 1 | NaN right), ``leaf_ids[t]`` the node id each of its ``2^depth`` leaf slots
    stands for and ``leaf_values[t]`` that leaf's value (``counts / weights`` when ``value``
    has zero rows; ``leaf_values`` may have zero trees when only ids are wanted).
    Raises ValueError for a tree deeper than ``depth``.
    """
    cdef Py_ssize_t n_nodes = nodes.shape[0], n_trees = roots.shape[0]
    cdef Py_ssize_t inner, n_leaves, t, p, s, c, width
    cdef bint with_values = leaf_values.shape[0] != 0
    cdef bint by_counts = value.shape[0] == 0
    if not 1 <= depth <= COMPLETE_MAX_DEPTH:
        raise ValueError(f"depth must be 1 to {COMPLETE_MAX_DEPTH}")
    inner = (1 << depth) - 1
    n_leaves = inner + 1
    if nodes.shape[1] != 4 or nan_right.shape[0] != n_nodes:
        raise ValueError("node table: expected (n_nodes, 4) records and n_nodes NaN flags")
    if slots.shape[0] != n_trees or slots.shape[1] != 2 * inner or leaf_ids.shape[0] != n_trees or leaf_ids.shape[1] != n_leaves:
        raise ValueError("slots and leaf_ids: expected (n_trees, 2 * (2^depth - 1)) and (n_trees, 2^depth)")
    width = leaf_values.shape[2]
    if with_values:
        if leaf_values.shape[0] != n_trees or leaf_values.shape[1] != n_leaves:
            raise ValueError("leaf_values: expected (n_trees, 2^depth, width)")
        if by_counts and (counts.shape[0] != n_nodes or weights.shape[0] != n_nodes or counts.shape[1] != width):
            raise ValueError("counts and weights: expected one row per node")
        if not by_counts and (value.shape[0] != n_nodes or value.shape[1] != width):
            raise ValueError("value: expected one row per node")
    for t in range(n_trees):
        if not 0 <= roots[t] < n_nodes:
            raise ValueError("tree root outside the node table")
    for p in range(n_nodes):
        if not 0 <= nodes[p, 1] < 1 << 30:
            raise ValueError("feature outside [0, 2^30): does not fit a slot")
    cdef const Node* table = <const Node*> &nodes[0, 0]
    cdef Slot* out
    cdef int64_t* src = <int64_t*> malloc((2 * inner + 1) * sizeof(int64_t))
    cdef const Node* nd
    cdef bint too_deep = False
    if src == NULL:
        raise MemoryError()
    with nogil:
        for t in range(n_trees):
            out = <Slot*> &slots[t, 0]
            src[0] = roots[t]
            for p in range(inner):
                s = src[p]
                nd = table + s
                if nd.left != 0 and s + nd.left >= 0 and s + nd.right >= 0 and s + nd.left < n_nodes and s + nd.right < n_nodes:
                    out[p].threshold = nd.threshold
                    out[p].split = (<uint32_t> nd.feature << 1) | nan_right[s]
                    src[2 * p + 1] = s + nd.left
                    src[2 * p + 2] = s + nd.right
                else:  # a leaf: every row goes left, down to the bottom
                    out[p].threshold = INFINITY
                    out[p].split = 0
                    src[2 * p + 1] = s
                    src[2 * p + 2] = s
            for p in range(n_leaves):
                s = src[inner + p]
                if table[s].left != 0:
                    too_deep = True
                leaf_ids[t, p] = s
                if with_values:
                    for c in range(width):
                        leaf_values[t, p, c] = (<double> counts[s, c] / weights[s]) if by_counts else value[s, c]
    free(src)
    if too_deep:
        raise ValueError(f"a tree is deeper than {depth}")


cdef inline Py_ssize_t _slot_step(const Slot* slot, Py_ssize_t i, const float* x) noexcept nogil:
    cdef Slot s = slot[i]
    cdef float v = x[s.split >> 1]
    # NaN: v > t is False (left) unless the NaN flag says right.
    return 2 * i + 1 + ((v > s.threshold) | ((v != v) & (s.split & 1)))


cdef void _complete_walk(
    const float* X, Py_ssize_t n_features, const Slot* slot, Py_ssize_t depth,
    Py_ssize_t rows, Py_ssize_t* leaf,
) noexcept nogil:
    """``leaf[r]``: the leaf slot (0 to 2^depth - 1) row ``r`` of ``X`` reaches, rows ``0:rows``."""
    cdef Py_ssize_t r = 0, j, d, inner = (1 << depth) - 1
    cdef Py_ssize_t i0, i1, i2, i3, i4, i5, i6, i7
    cdef const float* x
    while r + 8 <= rows:  # eight independent walks in registers
        x = X + r * n_features
        i0 = i1 = i2 = i3 = i4 = i5 = i6 = i7 = 0
        for d in range(depth):
            i0 = _slot_step(slot, i0, x)
            i1 = _slot_step(slot, i1, x + n_features)
            i2 = _slot_step(slot, i2, x + 2 * n_features)
            i3 = _slot_step(slot, i3, x + 3 * n_features)
            i4 = _slot_step(slot, i4, x + 4 * n_features)
            i5 = _slot_step(slot, i5, x + 5 * n_features)
            i6 = _slot_step(slot, i6, x + 6 * n_features)
            i7 = _slot_step(slot, i7, x + 7 * n_features)
        leaf[r] = i0 - inner
        leaf[r + 1] = i1 - inner
        leaf[r + 2] = i2 - inner
        leaf[r + 3] = i3 - inner
        leaf[r + 4] = i4 - inner
        leaf[r + 5] = i5 - inner
        leaf[r + 6] = i6 - inner
        leaf[r + 7] = i7 - inner
        r += 8
    while r < rows:
        x = X + r * n_features
        i0 = 0
        for d in range(depth):
            i0 = _slot_step(slot, i0, x)
        leaf[r] = i0 - inner
        r += 1


# Trees of depth 3 to 5 (shallower ones are padded to 3; 3 is gradient boosting's default)
# skip the walk: a block of rows, transposed feature-major, is compared with all 2^d - 1
# splits of a tree, a column at a time (the feature of a split is the same for every row,
# so these loops vectorise with plain SSE2/NEON compares), giving each row a mask of
# "goes right" bits; the top three levels' leaf is a lookup in _LEAF_OF_MASK (the walk's
# result for every 7-bit mask), the levels below read their bit from the mask.
cdef enum:
    MASK_DEPTH = 3
    MASK_MAX_DEPTH = 5  # 31 splits: the mask is an int32
    MASK_INNER = 7
    MASK_ROWS = 256  # rows compared at a time (their masks and columns stay in L1)
    MASK_MIN_ROWS = 8  # fewer rows walk (3 steps a tree, not 7 comparisons)

cdef uint8_t _LEAF_OF_MASK[1 << MASK_INNER]


cdef void _fill_leaf_of_mask() noexcept nogil:
    cdef int mask, i, d
    for mask in range(1 << MASK_INNER):
        i = 0
        for d in range(MASK_DEPTH):
            i = 2 * i + 1 + ((mask >> i) & 1)
        _LEAF_OF_MASK[mask] = <uint8_t> (i - MASK_INNER)


_fill_leaf_of_mask()


cdef void _transpose(const float* X, Py_ssize_t n_features, Py_ssize_t rows, float* xt) noexcept nogil:
    """``xt[f * MASK_ROWS + r] = X[r, f]`` for ``rows`` rows."""
    cdef Py_ssize_t r, f
    for r in range(rows):
        for f in range(n_features):
            xt[f * MASK_ROWS + r] = X[r * n_features + f]


cdef void _mask_walk(
    const float* xt, const Slot* slot, Py_ssize_t depth, Py_ssize_t rows, int32_t* mask, Py_ssize_t* leaf,
) noexcept nogil:
    """``leaf[r]``: the leaf slot row ``r`` of the transposed block ``xt`` reaches in a tree of ``depth`` 3 to 5."""
    cdef Py_ssize_t n, r, d, i, inner = (1 << depth) - 1
    cdef const float* col
    cdef float t
    cdef int32_t m
    for r in range(rows):
        mask[r] = 0
    for n in range(inner):
        col = xt + (slot[n].split >> 1) * MASK_ROWS
        t = slot[n].threshold
        if slot[n].split & 1:  # NaN goes right: not (v <= t)
            for r in range(rows):
                mask[r] |= (<int32_t> (not (col[r] <= t))) << n
        else:
            for r in range(rows):
                mask[r] |= (<int32_t> (col[r] > t)) << n
    if depth == MASK_DEPTH:
        for r in range(rows):
            leaf[r] = _LEAF_OF_MASK[mask[r]]
        return
    for r in range(rows):
        m = mask[r]
        i = MASK_INNER + _LEAF_OF_MASK[m & ((1 << MASK_INNER) - 1)]
        for d in range(MASK_DEPTH, depth):
            i = 2 * i + 1 + ((m >> i) & 1)
        leaf[r] = i - inner


cdef struct Scratch:
    Py_ssize_t* leaf
    float* xt
    int32_t* mask


cdef int _scratch(Scratch* w, Py_ssize_t block, Py_ssize_t n_features) except -1:
    w.leaf = <Py_ssize_t*> malloc(max(block, MASK_ROWS) * sizeof(Py_ssize_t))
    w.xt = <float*> malloc(max(1, n_features) * MASK_ROWS * sizeof(float))
    w.mask = <int32_t*> malloc(MASK_ROWS * sizeof(int32_t))
    if w.leaf == NULL or w.xt == NULL or w.mask == NULL:
        _free_scratch(w)
        raise MemoryError()
    return 0


cdef void _free_scratch(Scratch* w) noexcept:
    free(w.leaf)
    free(w.xt)
    free(w.mask)


cdef inline bint _by_mask(Py_ssize_t depth, Py_ssize_t n_rows) noexcept nogil:
    """Whether rows are compared a block at a time (:func:`_mask_walk`) rather than walked."""
    return MASK_DEPTH <= depth <= MASK_MAX_DEPTH and n_rows >= MASK_MIN_ROWS


cdef inline void _walk_tree(
    Scratch* w, const float* X, Py_ssize_t n_features, const Slot* slot, Py_ssize_t depth, Py_ssize_t rows, bint by_mask,
) noexcept nogil:
    """``w.leaf[r]``: the leaf slot each of ``rows`` rows reaches in one tree (``w.xt`` holds
    the block transposed when ``by_mask``)."""
    if by_mask:
        _mask_walk(w.xt, slot, depth, rows, w.mask, w.leaf)
    else:
        _complete_walk(X, n_features, slot, depth, rows, w.leaf)


cdef int _check_complete(
    const float[:, ::1] X, const uint32_t[:, ::1] slots, Py_ssize_t depth, Py_ssize_t start, Py_ssize_t stop,
) except -1:
    if not 1 <= depth <= COMPLETE_MAX_DEPTH or slots.shape[1] != 2 * ((1 << depth) - 1):
        raise ValueError("slots: expected (n_trees, 2 * (2^depth - 1)), depth 1 to 10")
    if not 0 <= start <= stop <= X.shape[0]:
        raise ValueError("row range outside X")
    return 0


def traverse_complete_leaves(
    const float[:, ::1] X,
    const uint32_t[:, ::1] slots,
    const int64_t[:, ::1] leaf_ids,
    Py_ssize_t depth,
    int64_t[:, ::1] out,
    Py_ssize_t start,
    Py_ssize_t stop,
    Py_ssize_t block_rows,
):
    """As :func:`traverse_leaves`, over trees laid out by :func:`pack_complete`: ``out[tree, row]``
    is the leaf (global node id) row ``row`` of ``X`` reaches, rows ``start:stop``, ``block_rows``
    rows through every tree at a time (256 at depths 3 to 5), without the GIL.

    ``X`` must have every feature the trees split on.
    """
    _check_complete(X, slots, depth, start, stop)
    cdef Py_ssize_t n_trees = slots.shape[0]
    if out.shape[0] != n_trees or out.shape[1] != X.shape[0] or leaf_ids.shape[0] != n_trees or leaf_ids.shape[1] != 1 << depth:
        raise ValueError("out and leaf_ids: expected (n_trees, n_rows) and (n_trees, 2^depth)")
    if start == stop or n_trees == 0:
        return
    cdef Py_ssize_t n_features = X.shape[1]
    cdef bint by_mask = _by_mask(depth, stop - start)
    cdef Py_ssize_t block = MASK_ROWS if by_mask else max(1, min(block_rows, stop - start))
    cdef Py_ssize_t first, rows, t, r
    cdef Scratch w
    _scratch(&w, block, n_features)
    with nogil:
        first = start
        while first < stop:
            rows = min(block, stop - first)
            if by_mask:
                _transpose(&X[first, 0], n_features, rows, w.xt)
            for t in range(n_trees):
                _walk_tree(&w, &X[first, 0], n_features, <const Slot*> &slots[t, 0], depth, rows, by_mask)
                for r in range(rows):
                    out[t, first + r] = leaf_ids[t, w.leaf[r]]
            first += rows
    _free_scratch(&w)


cdef enum:
    FEW_ROWS = 8  # fewer rows than this: one row at a time through eight trees at once


cdef void _complete_sum_row(
    const float* x, const Slot* slots, const double* leaf_values, Py_ssize_t n_trees, Py_ssize_t depth,
    Py_ssize_t width, double scale, Py_ssize_t k, double* out,
) noexcept nogil:
    """``out[(t % k) * width + c] += scale * leaf_values[t, leaf, c]`` for one row ``x``, tree by
    tree in order (the fold of :func:`traverse_complete_sum`), eight trees walked at once."""
    cdef Py_ssize_t inner = (1 << depth) - 1, n_leaves = inner + 1
    cdef Py_ssize_t t = 0, j, d, c, g = 0
    cdef Py_ssize_t leaf[8]
    cdef const Slot* s
    cdef const double* vals
    cdef double* acc
    cdef Py_ssize_t i0, i1, i2, i3, i4, i5, i6, i7
    while t < n_trees:
        s = slots + t * inner
        if t + 8 <= n_trees:
            i0 = i1 = i2 = i3 = i4 = i5 = i6 = i7 = 0
            for d in range(depth):
                i0 = _slot_step(s, i0, x)
                i1 = _slot_step(s + inner, i1, x)
                i2 = _slot_step(s + 2 * inner, i2, x)
                i3 = _slot_step(s + 3 * inner, i3, x)
                i4 = _slot_step(s + 4 * inner, i4, x)
                i5 = _slot_step(s + 5 * inner, i5, x)
                i6 = _slot_step(s + 6 * inner, i6, x)
                i7 = _slot_step(s + 7 * inner, i7, x)
            leaf[0] = i0 - inner
            leaf[1] = i1 - inner
            leaf[2] = i2 - inner
            leaf[3] = i3 - inner
            leaf[4] = i4 - inner
            leaf[5] = i5 - inner
            leaf[6] = i6 - inner
            leaf[7] = i7 - inner
            j = 8
        else:
            i0 = 0
            for d in range(depth):
                i0 = _slot_step(s, i0, x)
            leaf[0] = i0 - inner
            j = 1
        for d in range(j):  # in tree order
            vals = leaf_values + ((t + d) * n_leaves + leaf[d]) * width
            acc = out + g * width
            for c in range(width):
                acc[c] += scale * vals[c]
            g += 1
            if g == k:  # (t + d) % k without a division per tree
                g = 0
        t += j


def traverse_complete_sum(
    const float[:, ::1] X,
    const uint32_t[:, ::1] slots,
    const double[:, :, ::1] leaf_values,
    Py_ssize_t depth,
    double scale,
    Py_ssize_t k,
    double[:, ::1] out,
    Py_ssize_t start,
    Py_ssize_t stop,
    Py_ssize_t block_rows,
):
    """As :func:`traverse_sum`, over trees laid out by :func:`pack_complete`: add
    ``scale * leaf_values[t, leaf]`` of every tree ``t``, in tree order, to the ``t % k``-th
    column group of ``out[row]``, rows ``start:stop``, ``block_rows`` rows through every
    tree at a time (256 at depths 3 to 5), without the GIL. Each row's sum is the same left fold
    as sklearn's.
    """
    _check_complete(X, slots, depth, start, stop)
    cdef Py_ssize_t n_trees = slots.shape[0]
    cdef Py_ssize_t width = leaf_values.shape[2]
    if leaf_values.shape[0] != n_trees or leaf_values.shape[1] != 1 << depth:
        raise ValueError("leaf_values: expected (n_trees, 2^depth, width)")
    if k < 1 or out.shape[0] != X.shape[0] or out.shape[1] != k * width:
        raise ValueError("out: expected (n_rows, k * width)")
    if start == stop or n_trees == 0 or width == 0:
        return
    cdef Py_ssize_t n_features = X.shape[1]
    cdef bint by_mask = _by_mask(depth, stop - start)
    cdef Py_ssize_t block = MASK_ROWS if by_mask else max(1, min(block_rows, stop - start))
    cdef Py_ssize_t first, rows, t, r, c, out_width = k * width
    cdef const double* vals
    cdef double* acc
    cdef Scratch w
    if stop - start < FEW_ROWS:  # a row or a few: walks across trees overlap, no scratch
        with nogil:
            for r in range(start, stop):
                _complete_sum_row(&X[r, 0], <const Slot*> &slots[0, 0], &leaf_values[0, 0, 0], n_trees, depth, width, scale, k, &out[r, 0])
        return
    _scratch(&w, block, n_features)
    with nogil:
        first = start
        while first < stop:
            rows = min(block, stop - first)
            if by_mask:
                _transpose(&X[first, 0], n_features, rows, w.xt)
            for t in range(n_trees):
                _walk_tree(&w, &X[first, 0], n_features, <const Slot*> &slots[t, 0], depth, rows, by_mask)
                vals = &leaf_values[t, 0, 0]
                acc = &out[first, 0] + (t % k) * width
                if width == 1:
                    for r in range(rows):
                        acc[r * out_width] += scale * vals[w.leaf[r]]
                else:
                    for r in range(rows):
                        for c in range(width):
                            acc[r * out_width + c] += scale * vals[w.leaf[r] * width + c]
            first += rows
    _free_scratch(&w)


# --------------------------------------------------------------------------- histogram gradient boosting
# Node flags of the histogram boosting walk (treeshard.predictor.hist).
cdef enum:
    HIST_LEAF = 1
    HIST_MISSING_LEFT = 2
    HIST_CATEGORICAL = 4


def hist_sum(
    const double[:, ::1] X,
    const int64_t[::1] roots,
    const int64_t[::1] left,
    const int64_t[::1] right,
    const int64_t[::1] feature,
    const double[::1] threshold,
    const uint8_t[::1] flags,
    const int64_t[::1] raw_row,
    const uint32_t[:, ::1] raw_bitsets,
    const int64_t[::1] known_row,
    const uint32_t[:, ::1] known_bitsets,
    const double[::1] value,
    Py_ssize_t k,
    double[:, ::1] out,
    Py_ssize_t start,
    Py_ssize_t stop,
):
    """Add every histogram boosting tree's leaf value to ``out[row, tree % k]``, rows ``start:stop``.

    sklearn's ``_predict_one_from_raw_data``, test for test (``x <= threshold``
    in float64, NaN by ``missing_go_to_left``, categories cast to uint8 as
    sklearn's Cython casts them), tree by tree in storage order, so each
    ``out`` entry gets its trees' values in iteration order, as sklearn adds
    them. The node arrays must have been validated (``validate_hist_columns``):
    children inside their tree, features below ``X.shape[1]``, bitset rows
    inside the bitsets; only their lengths are checked here.
    """
    cdef Py_ssize_t n = left.shape[0]
    cdef Py_ssize_t n_trees = roots.shape[0]
    if not (right.shape[0] == feature.shape[0] == threshold.shape[0] == flags.shape[0] == raw_row.shape[0] == known_row.shape[0] == value.shape[0] == n):
        raise ValueError("node arrays of different lengths")
    if k < 1 or out.shape[1] != k or out.shape[0] != X.shape[0] or not 0 <= start <= stop <= X.shape[0]:
        raise ValueError("out: expected (n_rows, k) and 0 <= start <= stop <= n_rows")
    if raw_bitsets.shape[1] != 8 or known_bitsets.shape[1] != 8:
        raise ValueError("bitsets: expected 8 words per row")
    cdef Py_ssize_t t, row, node, c
    cdef double x
    cdef uint8_t f, category
    cdef bint go_left
    with nogil:
        for t in range(n_trees):
            c = t % k
            for row in range(start, stop):
                node = roots[t]
                f = flags[node]
                while not (f & HIST_LEAF):
                    x = X[row, feature[node]]
                    if isnan(x):
                        go_left = f & HIST_MISSING_LEFT
                    elif f & HIST_CATEGORICAL:
                        if x < 0:
                            go_left = f & HIST_MISSING_LEFT
                        else:
                            category = <uint8_t> x
                            if (raw_bitsets[raw_row[node], category >> 5] >> (category & 31)) & 1:
                                go_left = True
                            elif (known_bitsets[known_row[node], category >> 5] >> (category & 31)) & 1:
                                go_left = False
                            else:
                                go_left = f & HIST_MISSING_LEFT
                    else:
                        go_left = x <= threshold[node]
                    node = left[node] if go_left else right[node]
                    f = flags[node]
                out[row, c] += value[node]


# --------------------------------------------------------------------------- save
# A save's node columns, filled in one pass over sklearn's node records (and
# value arrays) of the trees a range of nodes spans: what the numpy version
# (treeshard.columns.TreeNodeRows.fill) does in one strided copy per column
# plus about ten passes for the weighted counts.

cdef bint _fill_tree(
    const uint8_t* records, Py_ssize_t width, Offsets o, const double* values, Py_ssize_t value_width,
    Py_ssize_t a, Py_ssize_t b, Py_ssize_t at,
    int32_t* left, int32_t* right, int32_t* feature, double* threshold, double* impurity,
    int64_t* samples, double* weighted, uint8_t* missing, int32_t* counts, bint exact,
) noexcept nogil:
    """Nodes ``a:b`` of one tree into the columns from row ``at``; returns whether every value
    so far is an exact weighted count (``counts`` is only trusted when the whole range is)."""
    cdef Py_ssize_t i, j, row
    cdef const uint8_t* rec
    cdef int64_t child
    cdef int32_t offset, c
    cdef double w, v, product, decoded
    cdef uint64_t decoded_bits, value_bits
    for i in range(a, b):
        row = at + i - a
        rec = records + i * width
        child = (<const int64_t*> (rec + o.left))[0]
        offset = <int32_t> child - <int32_t> i
        left[row] = offset if offset > 0 else 0
        child = (<const int64_t*> (rec + o.right))[0]
        offset = <int32_t> child - <int32_t> i
        right[row] = offset if offset > 0 else 0
        feature[row] = <int32_t> (<const int64_t*> (rec + o.feature))[0]
        threshold[row] = (<const double*> (rec + o.threshold))[0]
        impurity[row] = (<const double*> (rec + o.impurity))[0]
        samples[row] = (<const int64_t*> (rec + o.samples))[0]
        w = (<const double*> (rec + o.weighted))[0]
        weighted[row] = w
        missing[row] = rec[o.missing] if o.missing >= 0 else 0
        if counts == NULL or not exact:
            continue
        if not (w > 0):  # also NaN (an infinite weight or value fails below)
            exact = False
            continue
        for j in range(value_width):
            v = values[i * value_width + j]
            product = rint(v * w)
            if not (product >= 0 and product <= 2147483647.0):  # also NaN
                exact = False
                break
            c = <int32_t> product
            counts[row * value_width + j] = c
            decoded = c / w
            # Bits, not values: -0.0 == 0.0, but an int32 count cannot keep the sign of a zero.
            memcpy(&decoded_bits, &decoded, 8)
            memcpy(&value_bits, &v, 8)
            if decoded_bits != value_bits:
                exact = False
                break
    return exact


def fill_node_columns(
    const int64_t[::1] tree_ptr,
    const uint64_t[::1] record_addresses,
    const uint64_t[::1] value_addresses,
    Py_ssize_t record_width,
    tuple offsets,
    Py_ssize_t value_width,
    Py_ssize_t start,
    Py_ssize_t stop,
    int32_t[::1] left,
    int32_t[::1] right,
    int32_t[::1] feature,
    double[::1] threshold,
    double[::1] impurity,
    int64_t[::1] n_node_samples,
    double[::1] weighted_n_node_samples,
    uint8_t[::1] missing_go_to_left,
    int32_t[:, ::1] counts,
):
    """Rows ``start:stop`` of a save's node columns (child offsets, int32 features) from
    the sklearn trees whose node records and values start at ``record_addresses`` and
    ``value_addresses`` (one per tree, kept alive by the caller; ``tree_ptr`` their node
    offsets). ``offsets``: as :func:`check_and_layout`'s. ``counts`` (or None) receives
    the values as int32 weighted counts; returns whether they reproduce every value bit
    for bit (see ``treeshard.columns.encode_values``).
    """
    cdef Py_ssize_t n_trees = tree_ptr.shape[0] - 1
    cdef Py_ssize_t rows = stop - start
    cdef Py_ssize_t t, first, a, b, at
    cdef Offsets o
    cdef bint exact = True
    cdef int32_t* counts_ptr = NULL
    if (start < 0 or rows < 0 or n_trees < 0 or record_addresses.shape[0] != n_trees or value_addresses.shape[0] != n_trees
            or stop > tree_ptr[n_trees] or left.shape[0] != rows or right.shape[0] != rows or feature.shape[0] != rows
            or threshold.shape[0] != rows or impurity.shape[0] != rows or n_node_samples.shape[0] != rows
            or weighted_n_node_samples.shape[0] != rows or missing_go_to_left.shape[0] != rows):
        raise ValueError("fill_node_columns: columns and range do not match")
    if counts is not None:
        if counts.shape[0] != rows or counts.shape[1] != value_width:
            raise ValueError("fill_node_columns: counts and range do not match")
        if rows:
            counts_ptr = &counts[0, 0]
    if len(offsets) != 8:
        raise ValueError("expected 8 record offsets")
    for k, field in enumerate(offsets):
        if field < -1 or (field >= 0 and field + (1 if k == 7 else 8) > record_width) or (field == -1 and k != 7):
            raise ValueError("record offsets do not fit the record size")
    o.left, o.right, o.feature, o.threshold = offsets[0], offsets[1], offsets[2], offsets[3]
    o.impurity, o.samples, o.weighted, o.missing = offsets[4], offsets[5], offsets[6], offsets[7]
    if rows == 0:
        return True
    with nogil:
        t = 0
        while t < n_trees and tree_ptr[t + 1] <= start:
            t += 1
        at = 0
        while at < rows and t < n_trees:
            first = tree_ptr[t]
            a = start + at - first
            b = min(stop, tree_ptr[t + 1]) - first
            if b > a:
                exact = _fill_tree(
                    <const uint8_t*> record_addresses[t], record_width, o, <const double*> value_addresses[t], value_width,
                    a, b, at, &left[0], &right[0], &feature[0], &threshold[0], &impurity[0], &n_node_samples[0],
                    &weighted_n_node_samples[0], &missing_go_to_left[0], counts_ptr, exact,
                )
                at += b - a
            t += 1
    return exact


def buffer_addresses(list arrays, Py_ssize_t itemsize, bytes item_format, uint64_t[::1] out):
    """Write the address of each array's data into ``out``; False unless every array is
    C-contiguous with items of ``itemsize`` bytes (and of ``item_format``, if not None).
    The caller keeps the arrays alive while it uses ``out``."""
    cdef Py_buffer view
    cdef Py_ssize_t i
    cdef bint ok
    if out.shape[0] != len(arrays):
        raise ValueError("buffer_addresses: one address per array")
    for i in range(len(arrays)):
        PyObject_GetBuffer(arrays[i], &view, PyBUF_RECORDS_RO)
        ok = PyBuffer_IsContiguous(&view, b"C") and view.itemsize == itemsize and (item_format is None or (view.format != NULL and item_format == <bytes> view.format))
        out[i] = <uint64_t> view.buf
        PyBuffer_Release(&view)
        if not ok:
            return False
    return True


# --------------------------------------------------------------------------- eager load
# check_and_layout, writing each tree's records straight into the node array of
# an already built sklearn Tree (its __getstate__()["nodes"] is a view of the
# tree's own memory): a load then never holds the records twice.

def check_and_scatter(
    const int64_t[::1] tree_ptr,
    const int32_t[::1] left,
    const int32_t[::1] right,
    const int32_t[::1] feature,
    const double[::1] threshold,
    const double[::1] impurity,
    const int64_t[::1] n_node_samples,
    const double[::1] weighted_n_node_samples,
    const uint8_t[::1] missing_go_to_left,
    int64_t n_features,
    const uint64_t[::1] record_addresses,
    Py_ssize_t record_width,
    int64_t[::1] max_depth,
    tuple offsets,
):
    """:func:`check_and_layout`, with tree ``t``'s records written at ``record_addresses[t]``
    (``tree_ptr[t + 1] - tree_ptr[t]`` writable, zeroed records of ``record_width`` bytes,
    kept alive by the caller) instead of into one array. Trees are checked in order and
    the first problem is returned as ``(code, global node)``, as by :func:`check_and_layout`;
    the records of a tree with a problem are left partly written.
    """
    cdef Py_ssize_t n = left.shape[0]
    cdef Py_ssize_t n_trees = tree_ptr.shape[0] - 1
    cdef Py_ssize_t bad = -1
    cdef Py_ssize_t t, start, stop
    cdef int code = OK
    cdef int64_t local_ptr[2]
    cdef Offsets o
    cdef int32_t* depth
    cdef uint8_t* seen
    if (right.shape[0] != n or feature.shape[0] != n or threshold.shape[0] != n or impurity.shape[0] != n
            or n_node_samples.shape[0] != n or weighted_n_node_samples.shape[0] != n
            or missing_go_to_left.shape[0] != n or record_addresses.shape[0] != n_trees or max_depth.shape[0] != n_trees
            or n_trees < 1 or tree_ptr[0] != 0 or tree_ptr[n_trees] != n):
        return BAD_TREE_PTR, -1
    o = _record_offsets(offsets, record_width)
    _check_scratch(n, &depth, &seen)
    with nogil:
        for t in range(n_trees):
            start = tree_ptr[t]
            stop = tree_ptr[t + 1]
            if stop <= start or start < 0 or stop > n or record_addresses[t] == 0:
                code, bad = BAD_TREE_PTR, start
                break
            local_ptr[0] = 0
            local_ptr[1] = stop - start
            code = _check(
                local_ptr, 1, stop - start, &left[start], &right[start], &feature[start], &threshold[start],
                &impurity[start], &n_node_samples[start], &weighted_n_node_samples[start], &missing_go_to_left[start],
                n_features, <uint8_t*> record_addresses[t], record_width, o, &max_depth[t], depth + start, seen + start, &bad,
            )
            if code != OK:
                bad = start + bad if bad >= 0 else start
                break
    free(depth)
    free(seen)
    return code, (bad if code != OK else -1)


def divide_counts_into(
    const int64_t[::1] tree_ptr,
    const int32_t[:, ::1] counts,
    const double[::1] weights,
    const uint64_t[::1] value_addresses,
):
    """Tree ``t``'s values ``counts / weights[:, None]`` (numpy's float64 division, the same
    bits) written at ``value_addresses[t]``: ``tree_ptr[t + 1] - tree_ptr[t]`` rows of
    ``counts.shape[1]`` doubles, kept alive by the caller. What
    ``treeshard.columns.decode_values`` computes for ``"weighted_counts"``, one pass per batch."""
    cdef Py_ssize_t n_trees = tree_ptr.shape[0] - 1
    cdef Py_ssize_t width = counts.shape[1]
    cdef Py_ssize_t t, i, j
    cdef double* out
    cdef double w
    if (n_trees < 0 or value_addresses.shape[0] != n_trees or weights.shape[0] != counts.shape[0]
            or (n_trees > 0 and (tree_ptr[0] != 0 or tree_ptr[n_trees] != counts.shape[0]))):
        raise ValueError("divide_counts_into: trees, counts and weights do not match")
    for t in range(n_trees):
        if tree_ptr[t + 1] < tree_ptr[t] or value_addresses[t] == 0:
            raise ValueError("divide_counts_into: bad tree offsets or address")
    with nogil:
        for t in range(n_trees):
            out = <double*> value_addresses[t]
            for i in range(tree_ptr[t], tree_ptr[t + 1]):
                w = weights[i]
                for j in range(width):
                    out[0] = counts[i, j] / w
                    out += 1


# --------------------------------------------------------------------------- a few rows
# One row (or a few) is what a served model scores per request: there, converting X,
# calling the traversal with a dozen memoryview arguments and building the output from
# Python cost about as much as the walk itself. FewRows holds the node table's pointers
# and scores rows of the common kinds (a C-contiguous float32/float64 2-D ndarray, a list
# of lists of floats or ints up to 2^24) in one call: X checked and converted to float32
# exactly as the general path does, the walk and sums of traverse_sum /
# traverse_complete_sum, and the output. A single row of depth-first trees walks 8-byte
# records (Compact), half the cache lines of the 16-byte table. Any other X, or one the
# general path would refuse (wrong feature count, NaN where refused, infinity, float64
# beyond float32's range), gives None: the caller's general path then converts it or
# raises its own error.

cimport numpy as cnp
import numpy
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.math cimport exp, fabs, isinf

cnp.import_array()

cdef enum:
    FEW_MAX_ROWS = 32  # more rows: the block paths (the caller picks its limit, see Predictor._few_rows)
    FEW_MAX_VALUES = 4096  # rows x features converted on the stack
    EXACT_INT = 1 << 24  # ints up to this magnitude are exact in float32

cdef enum Output:
    SCORES = 0  # the sums, (n, k * width), or (n,) with flat
    INDEX = 1  # the argmax of each row's scores (numpy's: the first maximum, NaN counts as one)
    SIGN_INDEX = 2  # 1 where the (single) score is >= 0, else 0: a binary boosting's predict
    EXPIT = 3  # (n, 2): 1 - expit(s), expit(s) of the single score s (scaled by expit_scale)
    SHIFTED = 4  # the scores minus each row's maximum, as softmax's first step (NaN propagates)


cdef inline void _walk_row(
    const float* x, const Node* nodes, const uint8_t* nan_right, const int64_t* roots, Py_ssize_t n_trees,
    int64_t* leaves, Py_ssize_t group, bint has_nan,
) noexcept nogil:
    """:func:`_walk_pairs` for a single row ``x``: ``leaves[t]``, the leaf it reaches in tree ``t``,
    ``group`` trees walked at once; ``has_nan`` False: ``x`` holds no NaN (no missing-value test)."""
    cdef int64_t node[MAX_GROUP]
    cdef Py_ssize_t tree[MAX_GROUP]
    cdef Py_ssize_t t = 0, m = 0, j
    cdef int64_t i
    cdef const Node* nd
    cdef float v
    cdef int32_t step
    cdef bint right
    while m < group and t < n_trees:
        node[m] = roots[t]
        tree[m] = t
        m += 1
        t += 1
    while m > 0:
        j = 0
        while j < m:
            i = node[j]
            nd = nodes + i
            v = x[nd.feature]
            right = not (v <= nd.threshold)
            if has_nan and v != v:
                right = nan_right[i]
            step = nd.left + ((nd.right - nd.left) & -(<int32_t> right))
            if step != 0:
                node[j] = i + step
                j += 1
                continue
            leaves[tree[j]] = i
            if t < n_trees:
                node[j] = roots[t]
                tree[j] = t
                t += 1
                j += 1
            else:
                m -= 1
                node[j], tree[j] = node[m], tree[m]


cdef struct Compact:
    float threshold
    uint32_t packed  # right child offset << feature_bits | feature; 0 at a leaf (left child: the next node)


cdef inline void _walk_row_compact(
    const float* x, const Compact* nodes, const uint8_t* nan_right, const int64_t* roots, Py_ssize_t n_trees,
    int64_t* leaves, Py_ssize_t group, uint32_t feature_bits, bint has_nan,
) noexcept nogil:
    """:func:`_walk_row` over 8-byte records (trees whose left child is always the next node,
    as sklearn's depth-first builder lays them out): half the cache lines of a path."""
    cdef int64_t node[MAX_GROUP]
    cdef Py_ssize_t tree[MAX_GROUP]
    cdef Py_ssize_t t = 0, m = 0, j
    cdef int64_t i
    cdef Compact c
    cdef uint32_t mask = (1u << feature_bits) - 1, right_offset
    cdef float v
    cdef bint right
    while m < group and t < n_trees:
        node[m] = roots[t]
        tree[m] = t
        m += 1
        t += 1
    while m > 0:
        j = 0
        while j < m:
            i = node[j]
            c = nodes[i]
            right_offset = c.packed >> feature_bits
            if right_offset != 0:
                v = x[c.packed & mask]
                right = not (v <= c.threshold)
                if has_nan and v != v:
                    right = nan_right[i]
                node[j] = i + 1 + ((right_offset - 1) & -(<uint32_t> right))
                j += 1
                continue
            leaves[tree[j]] = i
            if t < n_trees:
                node[j] = roots[t]
                tree[j] = t
                t += 1
                j += 1
            else:
                m -= 1
                node[j], tree[j] = node[m], tree[m]


cdef bint _pack_compact(const Node* nodes, Py_ssize_t n_nodes, uint32_t feature_bits, Compact* out) noexcept nogil:
    """Fill ``out`` from the node table; False if a split's left child is not the next node or
    its right child's offset does not fit ``32 - feature_bits`` bits."""
    cdef Py_ssize_t i
    cdef int64_t limit = (<int64_t> 1) << (32 - feature_bits)
    for i in range(n_nodes):
        out[i].threshold = nodes[i].threshold
        if nodes[i].left == 0:
            out[i].packed = 0
        elif nodes[i].left != 1 or not 1 < nodes[i].right < limit or nodes[i].feature >> feature_bits != 0:
            return False
        else:
            out[i].packed = (<uint32_t> nodes[i].right << feature_bits) | <uint32_t> nodes[i].feature
    return True


cdef inline Py_ssize_t _finite_step(const Slot* slot, Py_ssize_t i, const float* x) noexcept nogil:
    cdef Slot s = slot[i]
    return 2 * i + 1 + (x[s.split >> 1] > s.threshold)


cdef inline void _complete_row_finite(
    const float* x, const Slot* slots, const double* leaf_values, Py_ssize_t n_trees, Py_ssize_t depth,
    Py_ssize_t width, double scale, Py_ssize_t k, double* out,
) noexcept nogil:
    """:func:`_complete_sum_row` for a row without NaN (no missing-value test): the same walks and
    the same fold of the sums; inlined with a constant ``depth`` where the caller has one."""
    cdef Py_ssize_t inner = (1 << depth) - 1, n_leaves = inner + 1
    cdef Py_ssize_t t = 0, j, d, c, g = 0, at
    cdef Py_ssize_t leaf[8]
    cdef const Slot* s
    cdef Py_ssize_t i0, i1, i2, i3, i4, i5, i6, i7
    while t < n_trees:
        s = slots + t * inner
        if t + 8 <= n_trees:
            i0 = i1 = i2 = i3 = i4 = i5 = i6 = i7 = 0
            for d in range(depth):
                i0 = _finite_step(s, i0, x)
                i1 = _finite_step(s + inner, i1, x)
                i2 = _finite_step(s + 2 * inner, i2, x)
                i3 = _finite_step(s + 3 * inner, i3, x)
                i4 = _finite_step(s + 4 * inner, i4, x)
                i5 = _finite_step(s + 5 * inner, i5, x)
                i6 = _finite_step(s + 6 * inner, i6, x)
                i7 = _finite_step(s + 7 * inner, i7, x)
            leaf[0], leaf[1], leaf[2], leaf[3] = i0, i1, i2, i3
            leaf[4], leaf[5], leaf[6], leaf[7] = i4, i5, i6, i7
            j = 8
        else:
            i0 = 0
            for d in range(depth):
                i0 = _finite_step(s, i0, x)
            leaf[0] = i0
            j = 1
        for d in range(j):  # in tree order
            at = ((t + d) * n_leaves + leaf[d] - inner) * width
            if width == 1:
                out[g] += scale * leaf_values[at]
            else:
                for c in range(width):
                    out[g * width + c] += scale * leaf_values[at + c]
            g += 1
            if g == k:
                g = 0
        t += j


cdef class FewRows:
    """A model's rows scored in one call, for batches of 1 to ``max_rows`` (at most 32) rows
    (fewer when ``max_rows`` times the feature count exceeds 4,096 values).

    Built over the :class:`~treeshard.Predictor`'s node table (and complete layout, when it
    has one). :meth:`run` returns None for an ``X`` it does not take; the caller then goes
    the general way. Every output equals the general path's bit for bit: the same float32
    conversion, walk, fold of the sums (``init`` plus ``scale`` times each tree's leaf
    value, tree order, ``k`` column groups) and final division by ``divisor``.
    """

    cdef object _keep
    cdef object _table  # the 8-byte records (an ndarray), or None
    cdef tuple _state
    cdef const Node* nodes
    cdef const uint8_t* nan_right
    cdef const int64_t* roots
    cdef const double* value
    cdef const int32_t* counts
    cdef const double* weights
    cdef const uint32_t* slots
    cdef const double* leaf_values
    cdef const double* init
    cdef const Compact* compact
    cdef uint32_t feature_bits
    cdef Py_ssize_t n_trees, n_features, width, k, out_width, depth, group, complete_depth
    cdef readonly Py_ssize_t max_rows
    cdef double scale, divisor, expit_scale
    cdef bint single_tree, allow_nan

    def __init__(
        self,
        const int32_t[:, ::1] nodes,
        const uint8_t[::1] nan_right,
        const int64_t[::1] roots,
        const double[:, ::1] value,
        const int32_t[:, ::1] counts,
        const double[::1] weights,
        object complete,
        const double[::1] init,
        *,
        Py_ssize_t n_features,
        Py_ssize_t depth,
        Py_ssize_t group,
        Py_ssize_t max_rows,
        double scale=1.0,
        Py_ssize_t k=1,
        double divisor=1.0,
        bint single_tree=False,
        bint allow_nan=False,
        double expit_scale=1.0,
    ):
        cdef Py_ssize_t n_nodes = nodes.shape[0], t
        cdef bint by_counts = value.shape[0] == 0
        cdef const uint32_t[:, ::1] slots
        cdef const double[:, :, ::1] leaf_values
        cdef uint32_t[::1] compact_view
        self.width = counts.shape[1] if by_counts else value.shape[1]
        if nodes.shape[1] != 4 or nan_right.shape[0] != n_nodes or roots.shape[0] == 0:
            raise ValueError("node table: expected (n_nodes, 4) records, n_nodes NaN flags and a tree")
        if by_counts and (counts.shape[0] != n_nodes or weights.shape[0] != n_nodes):
            raise ValueError("counts and weights: expected one row per node")
        if not by_counts and value.shape[0] != n_nodes:
            raise ValueError("value: expected one row per node")
        for t in range(roots.shape[0]):
            if not 0 <= roots[t] < n_nodes:
                raise ValueError("tree root outside the node table")
        if k < 1 or self.width < 1 or init.shape[0] != k * self.width or not 1 <= max_rows <= FEW_MAX_ROWS or n_features < 1:
            raise ValueError(f"FewRows: expected k >= 1, a value per column, init of k * width and 1 to {FEW_MAX_ROWS} rows")
        if single_tree and (roots.shape[0] != 1 or k != 1):
            raise ValueError("FewRows: a single tree has one root")
        self.nodes = <const Node*> &nodes[0, 0]
        self.nan_right = &nan_right[0]
        self.roots = &roots[0]
        self.value = NULL if by_counts else &value[0, 0]
        self.counts = &counts[0, 0] if by_counts else NULL
        self.weights = &weights[0] if by_counts else NULL
        self.init = &init[0]
        self.slots = NULL
        self.leaf_values = NULL
        self.complete_depth = 0
        keep = [nodes, nan_right, roots, value, counts, weights, init]
        if complete is not None:
            slots, leaf_values, self.complete_depth = complete
            if (not 1 <= self.complete_depth <= COMPLETE_MAX_DEPTH or slots.shape[0] != roots.shape[0]
                    or slots.shape[1] != 2 * ((1 << self.complete_depth) - 1) or leaf_values.shape[0] != roots.shape[0]
                    or leaf_values.shape[1] != 1 << self.complete_depth or leaf_values.shape[2] != self.width):
                raise ValueError("complete layout: expected slots (n_trees, 2 * (2^depth - 1)) and values (n_trees, 2^depth, width)")
            self.slots = &slots[0, 0]
            self.leaf_values = &leaf_values[0, 0, 0]
            keep += [slots, leaf_values]
        # A single row walks 8-byte records where the trees allow (no complete layout).
        self.compact = NULL
        self._table = None
        self.feature_bits = 1
        while (1 << self.feature_bits) < n_features:
            self.feature_bits += 1
        if self.complete_depth == 0 and self.feature_bits < 31:
            table = numpy.empty(2 * n_nodes, dtype=numpy.uint32)
            compact_view = table
            if _pack_compact(self.nodes, n_nodes, self.feature_bits, <Compact*> &compact_view[0]):
                self.compact = <const Compact*> &compact_view[0]
                self._table = table
        self._keep = keep  # the memoryviews keep their arrays alive, and so the pointers valid
        options = dict(n_features=n_features, depth=depth, group=group, max_rows=max_rows, scale=scale, k=k,
                       divisor=divisor, single_tree=single_tree, allow_nan=allow_nan, expit_scale=expit_scale)
        self._state = ((nodes.base, nan_right.base, roots.base, value.base, counts.base, weights.base, complete, init.base), options)
        self.n_trees = roots.shape[0]
        self.n_features = n_features
        self.k = k
        self.out_width = k * self.width
        self.depth = depth
        self.group = max(1, min(group, MAX_GROUP))
        self.max_rows = min(max_rows, FEW_MAX_VALUES // n_features) if n_features <= FEW_MAX_VALUES else 0
        self.scale = scale
        self.divisor = divisor
        self.single_tree = single_tree
        self.allow_nan = allow_nan
        self.expit_scale = expit_scale

    def __reduce__(self):
        """Pickled (and deep-copied, with its Predictor) as its arguments: the pointers are rebuilt."""
        return _new_few_rows, self._state

    @property
    def nbytes(self):
        """Bytes held beyond the arrays it was given: the 8-byte records, if any."""
        return self._table.nbytes if self.compact != NULL else 0

    @property
    def walks_compact(self):
        """Whether a single row walks the 8-byte records (else the node table)."""
        return self.compact != NULL

    cdef Py_ssize_t _load(self, object X, float* buf, bint* has_nan) except -1:
        """``X`` into ``buf`` as C-contiguous float32 rows; the number of rows, or 0 for an X left
        to the general path. ``has_nan``: whether a value is NaN."""
        cdef Py_ssize_t n, i, j, f = self.n_features
        cdef cnp.ndarray arr
        cdef const float* src32
        cdef const double* src64
        cdef double d
        cdef long long whole
        cdef int overflow
        cdef object row, v
        cdef float x
        if cnp.PyArray_CheckExact(X):
            arr = <cnp.ndarray> X
            if cnp.PyArray_NDIM(arr) != 2 or not cnp.PyArray_ISCARRAY_RO(arr) or not cnp.PyArray_ISNOTSWAPPED(arr):
                return 0
            n = cnp.PyArray_DIM(arr, 0)
            if cnp.PyArray_DIM(arr, 1) != f or not 1 <= n <= self.max_rows:
                return 0
            if cnp.PyArray_TYPE(arr) == cnp.NPY_FLOAT:
                memcpy(buf, cnp.PyArray_DATA(arr), n * f * sizeof(float))
            elif cnp.PyArray_TYPE(arr) == cnp.NPY_DOUBLE:
                src64 = <const double*> cnp.PyArray_DATA(arr)
                for i in range(n * f):
                    d = src64[i]
                    if fabs(d) <= FLT_MAX or d != d:
                        buf[i] = <float> d
                    else:  # rounds to FLT_MAX or overflows: numpy's cast decides (and may warn)
                        return 0
            else:
                return 0
        elif type(X) is list:
            n = len(<list> X)
            if not 1 <= n <= self.max_rows:
                return 0
            for i in range(n):
                row = (<list> X)[i]
                if type(row) is not list or len(<list> row) != f:
                    return 0
                for j in range(f):
                    v = (<list> row)[j]
                    if type(v) is float:
                        d = <double> v
                        if not (fabs(d) <= FLT_MAX or d != d):
                            return 0
                        buf[i * f + j] = <float> d
                    elif type(v) is int:
                        whole = PyLong_AsLongLongAndOverflow(v, &overflow)
                        if overflow or not -EXACT_INT <= whole <= EXACT_INT:
                            return 0
                        buf[i * f + j] = <float> whole
                    else:
                        return 0
        else:
            return 0
        has_nan[0] = False
        for i in range(n * f):  # sklearn's finiteness check; its errors are the general path's
            x = buf[i]
            if x != x:
                if not self.allow_nan:
                    return 0
                has_nan[0] = True
            elif isinf(x):
                return 0
        return n

    cdef int _score(self, const float* X, Py_ssize_t n, bint has_nan, double* out) noexcept nogil:
        """The scores of rows ``X`` (``n``, n_features) into ``out`` (``n``, out_width); -1 if
        out of memory."""
        cdef Py_ssize_t r, c, leaf
        cdef int64_t leaves[FEW_MAX_ROWS]
        cdef int64_t* many
        cdef Py_ssize_t W = self.out_width
        if self.single_tree:  # the leaf's value itself, as sklearn's tree (no sum: -0.0 stays -0.0)
            _walk_pairs(X, self.n_features, self.nodes, self.nan_right, self.roots, 1, 0, n, leaves, n, self.group)
            for r in range(n):
                leaf = leaves[r]
                for c in range(W):
                    if self.counts == NULL:
                        out[r * W + c] = self.value[leaf * W + c]
                    else:
                        out[r * W + c] = <double> self.counts[leaf * W + c] / self.weights[leaf]
            return 0
        for r in range(n):
            for c in range(W):
                out[r * W + c] = self.init[c]
        if self.complete_depth:
            for r in range(n):
                if has_nan:
                    _complete_sum_row(X + r * self.n_features, <const Slot*> self.slots, self.leaf_values, self.n_trees,
                                      self.complete_depth, self.width, self.scale, self.k, out + r * W)
                elif self.complete_depth == MASK_DEPTH:  # gradient boosting's default depth, unrolled
                    _complete_row_finite(X + r * self.n_features, <const Slot*> self.slots, self.leaf_values, self.n_trees,
                                         MASK_DEPTH, self.width, self.scale, self.k, out + r * W)
                else:
                    _complete_row_finite(X + r * self.n_features, <const Slot*> self.slots, self.leaf_values, self.n_trees,
                                         self.complete_depth, self.width, self.scale, self.k, out + r * W)
        else:
            many = <int64_t*> malloc(self.n_trees * n * sizeof(int64_t))
            if many == NULL:
                return -1
            if n == 1 and self.compact != NULL and has_nan:
                _walk_row_compact(X, self.compact, self.nan_right, self.roots, self.n_trees, many, self.group, self.feature_bits, True)
            elif n == 1 and self.compact != NULL:
                _walk_row_compact(X, self.compact, self.nan_right, self.roots, self.n_trees, many, self.group, self.feature_bits, False)
            elif n == 1 and has_nan:
                _walk_row(X, self.nodes, self.nan_right, self.roots, self.n_trees, many, self.group, True)
            elif n == 1:
                _walk_row(X, self.nodes, self.nan_right, self.roots, self.n_trees, many, self.group, False)
            else:
                _walk_pairs(X, self.n_features, self.nodes, self.nan_right, self.roots, self.n_trees, 0, n, many, n, self.group)
            _add_values(many, self.n_trees, 0, n, self.value, self.counts, self.weights, self.width, self.scale, self.k, out)
            free(many)
        if self.divisor != 1.0:
            for r in range(n * W):
                out[r] /= self.divisor
        return 0

    def scores(self, object X, bint flat=False):
        """The scores (n, k * width) of rows ``X`` ((n,) with ``flat`` and one column), or None
        when ``X`` is left to the general path; so are the other methods'."""
        return self._run(X, SCORES, flat)

    def index(self, object X):
        """Each row's argmax of its scores, (n,) intp, as numpy's ``argmax(axis=1)``."""
        return self._run(X, INDEX, False)

    def sign_index(self, object X):
        """(n,) intp: 1 where a row's single score is >= 0, else 0 (a binary boosting's predict)."""
        return self._run(X, SIGN_INDEX, False)

    def expit(self, object X):
        """(n, 2): ``1 - p, p`` with ``p`` scipy's expit of ``expit_scale`` times the single score."""
        return self._run(X, EXPIT, False)

    def shifted(self, object X):
        """The scores minus each row's maximum (softmax's first step; a NaN makes its row NaN)."""
        return self._run(X, SHIFTED, False)

    cdef object _run(self, object X, int output, bint flat):
        cdef float buf[FEW_MAX_VALUES]
        cdef bint has_nan
        cdef Py_ssize_t n = self._load(X, buf, &has_nan), r, c, best
        cdef Py_ssize_t W = self.out_width
        cdef double scores[FEW_MAX_ROWS * 64]
        cdef double* s
        cdef double top, p
        cdef cnp.npy_intp dims[2]
        cdef cnp.ndarray result
        cdef double* res
        cdef cnp.npy_intp* idx
        cdef int failed
        if n == 0:
            return None
        dims[0] = n
        if output == SCORES or output == SHIFTED:
            dims[1] = W
            result = cnp.PyArray_EMPTY(1 if flat else 2, dims, cnp.NPY_DOUBLE, 0)
            res = <double*> cnp.PyArray_DATA(result)
            with nogil:
                failed = self._score(buf, n, has_nan, res)
                if output == SHIFTED and not failed:  # X -= np.max(X, axis=1)[:, None]: exact, with max's NaN
                    for r in range(n):
                        s = res + r * W
                        top = s[0]
                        for c in range(1, W):
                            if top != top:
                                break
                            if s[c] > top or s[c] != s[c]:
                                top = s[c]
                        for c in range(W):
                            s[c] -= top
            if failed:
                raise MemoryError()
            return result
        if W > 64:
            return None
        with nogil:
            failed = self._score(buf, n, has_nan, scores)
        if failed:
            raise MemoryError()
        if output == EXPIT:
            if W != 1:
                return None
            dims[1] = 2
            result = cnp.PyArray_EMPTY(2, dims, cnp.NPY_DOUBLE, 0)
            res = <double*> cnp.PyArray_DATA(result)
            for r in range(n):
                # scipy's expit, 1 / (1 + exp(-x)), with the C library's exp (links.expit)
                p = 1.0 / (1.0 + exp(-(self.expit_scale * scores[r])))
                res[2 * r + 1] = p
                res[2 * r] = 1 - p
            return result
        result = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INTP, 0)
        idx = <cnp.npy_intp*> cnp.PyArray_DATA(result)
        for r in range(n):
            s = scores + r * W
            if output == SIGN_INDEX:
                idx[r] = 1 if s[0] >= 0 else 0
                continue
            best = 0  # numpy's argmax: a later value wins only if not <= the best; a NaN is final
            top = s[0]
            for c in range(1, W):
                if top != top:
                    break
                if not s[c] <= top:
                    top = s[c]
                    best = c
            idx[r] = best
        return result


def _new_few_rows(tuple args, dict options):
    """A :class:`FewRows` from its pickled arguments."""
    return FewRows(*args, **options)


def copy_rows_into(const int64_t[::1] tree_ptr, const double[:, ::1] values, const uint64_t[::1] value_addresses):
    """Tree ``t``'s rows of ``values`` copied to ``value_addresses[t]`` (as
    :func:`divide_counts_into` writes them): float64 values stored as they are."""
    cdef Py_ssize_t n_trees = tree_ptr.shape[0] - 1
    cdef Py_ssize_t width = values.shape[1]
    cdef Py_ssize_t t
    if (n_trees < 0 or value_addresses.shape[0] != n_trees
            or (n_trees > 0 and (tree_ptr[0] != 0 or tree_ptr[n_trees] != values.shape[0]))):
        raise ValueError("copy_rows_into: trees and values do not match")
    for t in range(n_trees):
        if tree_ptr[t + 1] < tree_ptr[t] or value_addresses[t] == 0:
            raise ValueError("copy_rows_into: bad tree offsets or address")
    if values.shape[0] == 0 or width == 0:
        return
    with nogil:
        for t in range(n_trees):
            memcpy(<void*> value_addresses[t], &values[tree_ptr[t], 0], (tree_ptr[t + 1] - tree_ptr[t]) * width * sizeof(double))


# --------------------------------------------------------------------------- chunk decoding
# An eager load decodes every chunk of the node columns. Done one chunk at a time from Python
# (a read, a sha256, a crc32c and a Blosc call, each a trip through the interpreter and the
# GIL), the decoding thread waits for the GIL whenever the caller's thread holds it in sklearn's
# Tree.__setstate__. decode_batch checks and decodes a batch's runs of chunks in one nogil call,
# through the C functions treeshard.chunks found in libraries already loaded (OpenSSL's SHA256
# behind hashlib, google_crc32c's crc32c_value, Blosc's decompressor bundled in numcodecs).

ctypedef uint32_t (*crc32c_fn)(const uint8_t* data, size_t n) noexcept nogil
ctypedef unsigned char* (*sha256_fn)(const unsigned char* data, size_t n, unsigned char* md) noexcept nogil
ctypedef int (*blosc_validate_fn)(const void* src, size_t n, size_t* nbytes) noexcept nogil
ctypedef int (*blosc_decompress_fn)(const void* src, void* dest, size_t destsize, int nthreads) noexcept nogil


cdef struct ChunkRun:
    const uint8_t* data
    int64_t size
    const int64_t* starts
    const int64_t* lengths
    Py_ssize_t n
    const uint8_t* digests  # n x 32, or NULL: no digest check
    uint8_t* out
    Py_ssize_t out_bytes
    Py_ssize_t chunk_bytes
    bint compressed


cdef struct ChunkFunctions:
    crc32c_fn crc
    sha256_fn sha
    blosc_validate_fn validate
    blosc_decompress_fn decompress


cdef inline uint32_t _le32(const uint8_t* p) noexcept nogil:
    return (<uint32_t> p[0]) | (<uint32_t> p[1] << 8) | (<uint32_t> p[2] << 16) | (<uint32_t> p[3] << 24)


cdef Py_ssize_t _decode_run(const ChunkRun* run, const ChunkFunctions* f) noexcept nogil:
    """Check and decode the chunks of ``run`` in order; the index of the first that fails (-1: none)."""
    cdef Py_ssize_t i, j
    cdef int64_t start, length
    cdef const uint8_t* chunk
    cdef unsigned char md[32]
    cdef size_t nbytes
    for i in range(run.n):
        start = run.starts[i]
        length = run.lengths[i]
        if start < 0 or length < 4 or start > run.size - length:
            return i
        chunk = run.data + start
        if run.digests != NULL:
            f.sha(chunk, <size_t> length, md)
            for j in range(32):
                if md[j] != run.digests[32 * i + j]:
                    return i
        if f.crc(chunk, <size_t> (length - 4)) != _le32(chunk + length - 4):
            return i
        if run.compressed:
            # The header checks of treeshard.blosc.BloscDecoder.decode_into, then Blosc's own.
            if (length - 4 < 16 or <Py_ssize_t> _le32(chunk + 4) != run.chunk_bytes or <int64_t> _le32(chunk + 12) != length - 4
                    or f.validate(chunk, <size_t> (length - 4), &nbytes) != 0
                    or f.decompress(chunk, run.out + i * run.chunk_bytes, <size_t> run.chunk_bytes, 1) != run.chunk_bytes):
                return i
        else:
            if length - 4 != run.chunk_bytes:
                return i
            memcpy(run.out + i * run.chunk_bytes, chunk, <size_t> run.chunk_bytes)
    return -1


cdef int _chunk_functions(tuple functions, ChunkFunctions* f) except -1:
    if len(functions) != 4:
        raise ValueError("decode_batch: four function addresses")
    f.crc = <crc32c_fn> <uintptr_t> <uint64_t> functions[0]
    f.sha = <sha256_fn> <uintptr_t> <uint64_t> functions[1]
    f.validate = <blosc_validate_fn> <uintptr_t> <uint64_t> functions[2]
    f.decompress = <blosc_decompress_fn> <uintptr_t> <uint64_t> functions[3]
    if f.crc == NULL or f.sha == NULL or f.validate == NULL or f.decompress == NULL:
        raise ValueError("decode_batch: a function address is 0")
    return 0


cdef ChunkRun* _chunk_runs(list runs) except NULL:
    """The C view of ``decode_batch``' runs (freed by the caller); the arrays stay alive in ``runs``."""
    cdef Py_ssize_t r, n_runs = len(runs)
    cdef ChunkRun* c_runs = <ChunkRun*> calloc(n_runs if n_runs > 0 else 1, sizeof(ChunkRun))
    cdef const uint8_t[::1] data
    cdef const int64_t[::1] starts
    cdef const int64_t[::1] lengths
    cdef const uint8_t[:, ::1] digests
    if c_runs == NULL:
        raise MemoryError()
    try:
        for r in range(n_runs):
            data, starts, lengths, digests = runs[r][0], runs[r][1], runs[r][2], runs[r][3]
            c_runs[r].size = data.shape[0]
            c_runs[r].data = &data[0] if data.shape[0] else NULL
            c_runs[r].n = starts.shape[0]
            c_runs[r].starts = &starts[0] if starts.shape[0] else NULL
            c_runs[r].lengths = &lengths[0] if lengths.shape[0] else NULL
            c_runs[r].digests = &digests[0, 0] if digests.shape[0] else NULL
            c_runs[r].out = <uint8_t*> <uintptr_t> <uint64_t> runs[r][4]
            c_runs[r].out_bytes = runs[r][5]
            c_runs[r].chunk_bytes = runs[r][6]
            c_runs[r].compressed = runs[r][7]
            if (lengths.shape[0] != c_runs[r].n or (digests.shape[0] and (digests.shape[0] != c_runs[r].n or digests.shape[1] != 32))
                    or c_runs[r].out == NULL or c_runs[r].chunk_bytes <= 0 or c_runs[r].n * c_runs[r].chunk_bytes > c_runs[r].out_bytes):
                raise ValueError("decode_batch: chunks, digests and output do not match")
    except BaseException:
        free(c_runs)
        raise
    return c_runs


cdef int _check_blocks(const uint64_t[::1] targets, const uint64_t[::1] sources, const int64_t[::1] sizes) except -1:
    cdef Py_ssize_t i, n = targets.shape[0]
    if sources.shape[0] != n or sizes.shape[0] != n:
        raise ValueError("copy_blocks: one source and size per target")
    for i in range(n):
        if sizes[i] < 0 or (sizes[i] and (targets[i] == 0 or sources[i] == 0)):
            raise ValueError("copy_blocks: bad block")
    return 0


cdef void _copy_blocks(const uint64_t[::1] targets, const uint64_t[::1] sources, const int64_t[::1] sizes) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(targets.shape[0]):
        memcpy(<void*> <uintptr_t> targets[i], <const void*> <uintptr_t> sources[i], <size_t> sizes[i])


cdef int _check_weighted(const double[::1] weights, const int32_t[:, ::1] counts) except -1:
    if counts.shape[0] != weights.shape[0]:
        raise ValueError("weighted_counts_valid: one row of counts per weight")
    return 0


cdef bint _weighted_counts_valid(const double[::1] weights, const int32_t[:, ::1] counts) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(weights.shape[0]):
        if not (weights[i] > 0):
            return False
        for j in range(counts.shape[1]):
            if counts[i, j] < 0:
                return False
    return True


def decode_batch(list runs, tuple functions, tuple copies=None, tuple weighted=None):
    """Check and decode runs of chunks, in order, in one GIL-free pass: what an eager load's
    reader thread does for a batch. First the blocks of ``copies`` (``(targets, sources,
    sizes)``, see :func:`copy_blocks`) are copied; then run ``r``, ``(data, starts, lengths,
    digests, out_address, out_bytes, chunk_bytes, compressed)``, is decoded: chunk ``i`` is
    ``data[starts[i]:starts[i] + lengths[i]]`` (its encoded bytes and crc32c), decoded into
    ``out_address + i * chunk_bytes`` (``out_bytes`` writable bytes, kept alive by the caller);
    ``digests``: each chunk's sha256 (an empty array: no digest check). ``functions``: the
    addresses of crc32c_value, SHA256, blosc_cbuffer_validate and blosc_decompress_ctx. Last,
    the rows of ``weighted`` (``(weights, counts)``, see :func:`weighted_counts_valid`) are
    checked. Returns ``(run, chunk, valid)``: the first chunk that fails a check (``-1, -1``:
    none; then ``valid`` says whether the weighted counts are). The caller reads a failing
    chunk again through its checked path, which raises the error that names the problem."""
    cdef ChunkFunctions f
    cdef Py_ssize_t n_runs = len(runs)
    cdef Py_ssize_t r = 0, bad = -1
    cdef ChunkRun* c_runs
    cdef const uint64_t[::1] targets = None
    cdef const uint64_t[::1] sources = None
    cdef const int64_t[::1] sizes = None
    cdef const double[::1] weights = None
    cdef const int32_t[:, ::1] counts = None
    cdef bint valid = True
    _chunk_functions(functions, &f)
    if copies is not None:
        targets, sources, sizes = copies
        _check_blocks(targets, sources, sizes)
    if weighted is not None:
        weights, counts = weighted
        _check_weighted(weights, counts)
    c_runs = _chunk_runs(runs)
    try:
        with nogil:
            if targets is not None:
                _copy_blocks(targets, sources, sizes)
            for r in range(n_runs):
                bad = _decode_run(&c_runs[r], &f)
                if bad >= 0:
                    break
            if bad < 0 and weights is not None:
                valid = _weighted_counts_valid(weights, counts)
    finally:
        free(c_runs)
    if bad < 0:
        return -1, -1, valid
    return r, bad, valid


def copy_blocks(const uint64_t[::1] targets, const uint64_t[::1] sources, const int64_t[::1] sizes):
    """``sizes[i]`` bytes from ``sources[i]`` to ``targets[i]`` (addresses the caller keeps
    alive; blocks that do not overlap), GIL-free."""
    _check_blocks(targets, sources, sizes)
    with nogil:
        _copy_blocks(targets, sources, sizes)


def weighted_counts_valid(const double[::1] weights, const int32_t[:, ::1] counts):
    """Whether every weight is > 0 (not NaN) and every count >= 0, GIL-free: what
    ``treeshard.columns.check_weighted_counts`` checks (it names the first problem)."""
    cdef bint ok
    _check_weighted(weights, counts)
    with nogil:
        ok = _weighted_counts_valid(weights, counts)
    return ok
