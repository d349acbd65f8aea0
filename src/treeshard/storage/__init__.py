"""Where a model's bytes live and how they are reached (local paths for now; see docs/ARCHITECTURE.md).

``storage.local`` holds the checks a directory or ``.zip`` path passes before
it is read and the staged write of a path; it is the bottom of the storage
layer, which the readers, the remote backend and the verifier share.
"""
