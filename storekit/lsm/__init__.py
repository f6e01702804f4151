"""The LSM engine: sorted tables, leveled compaction, manifest and snapshots.

``LSMStore`` is the public entry point. The other modules are internal:
``table``, ``block``, ``bloom`` and ``block_cache`` (the table file format),
``version`` (levels and file metadata), ``manifest`` (durable version
edits), ``merge`` (merging iterators), ``compaction`` (picking and running
compactions), ``jobs`` (the background thread, flushes and table files)
and ``engine`` (the store itself).
"""

from .engine import LSMStore

__all__ = ["LSMStore"]
