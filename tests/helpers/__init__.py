"""Helpers shared by the test modules (``from helpers.data import make_data``).

``data``: training data and query rows; ``stores``: store locations, round
trips, config edits and ``reseal``; ``compare``: exact comparisons;
``simd``: a test rerun with numpy's SIMD dispatch off; ``counting_store``:
a zarr store that logs every read; ``servers``: loopback S3 and HTTP servers
(and their fixtures).
"""
