# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""One pass over untrusted node columns: validate every tree and lay it out for sklearn.

The numpy version of these checks (treeshard.validate) takes about ten
passes over the nodes; this kernel does them, computes every node's depth
and writes sklearn's node records in a single pass, ~10x faster. Every array
index below is checked against its bounds before use: the point of this code
is to reject input that would make sklearn's own traversal read out of bounds.
"""

from libc.math cimport isnan
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport calloc, free

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
    cdef int64_t field
    if (right.shape[0] != n or feature.shape[0] != n or threshold.shape[0] != n or impurity.shape[0] != n
            or n_node_samples.shape[0] != n or weighted_n_node_samples.shape[0] != n
            or missing_go_to_left.shape[0] != n or records.shape[0] != n or max_depth.shape[0] != n_trees
            or n_trees < 1 or tree_ptr[0] != 0 or tree_ptr[n_trees] != n):
        return BAD_TREE_PTR, -1
    if len(offsets) != 8:
        raise ValueError("expected 8 record offsets")
    for k, field in enumerate(offsets):
        if field < -1 or (field >= 0 and field + (1 if k == 7 else 8) > width):
            raise ValueError("record offsets do not fit the record size")
    o.left, o.right, o.feature, o.threshold = offsets[0], offsets[1], offsets[2], offsets[3]
    o.impurity, o.samples, o.weighted, o.missing = offsets[4], offsets[5], offsets[6], offsets[7]
    depth = <int32_t*> calloc(n if n > 0 else 1, sizeof(int32_t))
    seen = <uint8_t*> calloc(n if n > 0 else 1, sizeof(uint8_t))
    if depth == NULL or seen == NULL:
        free(depth)
        free(seen)
        raise MemoryError()
    with nogil:
        code = _check(
            &tree_ptr[0], n_trees, n, &left[0], &right[0], &feature[0], &threshold[0], &impurity[0],
            &n_node_samples[0], &weighted_n_node_samples[0], &missing_go_to_left[0], n_features,
            &records[0, 0], width, o, &max_depth[0], depth, seen, &bad,
        )
    free(depth)
    free(seen)
    return code, bad
