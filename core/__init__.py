"""Stairway core: domain logic shared by the daemon and the trainer.

Nothing in this package performs network I/O, and nothing here imports ``daemon`` or
``trainer`` (tests/unit/test_boundaries.py enforces it).
"""
