"""HRENet: Python tools for the HRENet Caffe fork (datasets, LMDBs, CRF,
scoring).

Modules are imported on demand; nothing runs at import.
"""
__all__ = []
