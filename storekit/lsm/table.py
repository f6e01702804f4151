"""Sorted tables (SSTables): the immutable files of the LSM tree.

A table contains entries in internal-key order (user key ascending, then
sequence number descending), each a put or a tombstone. ``TableBuilder``
writes one through a ``storekit.fs.File``. ``TableReader`` opens one for
point lookups and range iteration. File layout, in order:

    data blocks        entries with prefix compression (storekit.lsm.block)
    filter block       bloom filter over the user keys; absent with 0 bits/key
    properties block   named counters and key/sequence bounds
    index block        one entry per data block: separator key -> handle
    footer             60 bytes: block handles, entry count, version, magic

Every block ends with a trailer carrying its compression type and an xxh32
checksum. docs/formats.md gives every byte. The writer is in
storekit.lsm.table_builder and the reader in storekit.lsm.table_reader.
"""

from .block_cache import BlockCache
from .table_builder import TableBuilder, TableInfo
from .table_reader import TableReader, describe_table

__all__ = ["BlockCache", "TableBuilder", "TableInfo", "TableReader", "describe_table"]
