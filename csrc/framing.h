/* Record framing of storekit logs: the C version of storekit/_framing_py.py.
 *
 * A log is a sequence of 32 KiB blocks. A record is stored as one or more
 * fragments, and no fragment crosses a block boundary. Each fragment has a
 * 7-byte little-endian header: a u32 xxh32 checksum of the length, type and
 * payload bytes, then the u16 payload length and the u8 type. Fewer than 7
 * bytes left in a block are zero padding. Every function here returns the
 * same results as its Python counterpart for every valid input.
 *
 * The Python wrapper checks argument types and ranges before calling in.
 * These functions check them again and return an error code, so a bad
 * argument never reads or writes out of bounds. */
#ifndef STOREKIT_FRAMING_H
#define STOREKIT_FRAMING_H

#include <stdint.h>

#define SK_BLOCK_SIZE 32768
#define SK_HEADER_SIZE 7

/* Fragment types. */
#define SK_FULL 1
#define SK_FIRST 2
#define SK_MIDDLE 3
#define SK_LAST 4

/* sk_scan statuses. SK_STATUS_FULL is internal to the C interface: the
 * fragment array filled up and the caller should scan on from
 * next_position. */
#define SK_STATUS_OK 0
#define SK_STATUS_TRUNCATED 1
#define SK_STATUS_CORRUPT 2
#define SK_STATUS_FULL 3

/* Reasons that come with SK_STATUS_CORRUPT. */
#define SK_REASON_NONE 0
#define SK_REASON_CHECKSUM 1
#define SK_REASON_ZEROS 2
#define SK_REASON_BAD_TYPE 3
#define SK_REASON_BAD_LENGTH 4
#define SK_REASON_ORDER 5

/* Returned for arguments outside the documented ranges. */
#define SK_INVALID_ARGUMENT (-2)

/* One fragment found by sk_scan. All fields have the same type, so an array
 * of these is also a flat int64_t array of 3 * count values. */
typedef struct {
    int64_t payload_start;  /* buffer index of the first payload byte */
    int64_t payload_length;
    int64_t type;           /* SK_FULL .. SK_LAST */
} sk_fragment;

typedef struct {
    int64_t count;          /* fragments written, whole records only */
    int64_t next_position;  /* where the first record not written starts */
    int64_t bad_position;   /* header of the failed fragment, or -1 */
    int32_t status;         /* SK_STATUS_* */
    int32_t reason;         /* SK_REASON_* */
} sk_scan_result;

/* Returns how many bytes sk_frame writes for a `length`-byte payload at
 * `block_offset` (the file offset modulo SK_BLOCK_SIZE), or 0 when
 * `length` < 0 or `block_offset` is outside 0 .. SK_BLOCK_SIZE - 1. */
uint64_t sk_framed_size(int64_t length, int64_t block_offset);

/* Writes the framed bytes of `payload` to `out` and returns how many were
 * written, which equals sk_framed_size. Returns SK_INVALID_ARGUMENT when
 * `out_capacity` is too small or another argument is invalid. */
int64_t sk_frame(const uint8_t *payload, int64_t length, int64_t block_offset,
                 uint8_t *out, int64_t out_capacity);

/* Parses fragments from buffer[start .. length) where buffer[0] is at file
 * offset `base_offset`, writes at most `capacity` of them to `fragments`
 * and fills `result`. Returns 0, or SK_INVALID_ARGUMENT when `start` is
 * outside 0 .. length or a pointer is NULL. When the array fills up before
 * the scan ends, result->status is SK_STATUS_FULL: the fragments of every
 * whole record so far are written, and scanning again from
 * result->next_position continues exactly where this call stopped. A
 * fragment array of length / SK_HEADER_SIZE + 1 entries never fills up. */
int sk_scan(const uint8_t *buffer, int64_t length, int64_t start,
            uint64_t base_offset, sk_fragment *fragments, int64_t capacity,
            sk_scan_result *result);

/* Returns the buffer index of the first block start at or after
 * `from_position` whose fragment header passes its checksum, -1 when there
 * is none, or SK_INVALID_ARGUMENT. */
int64_t sk_first_valid_header(const uint8_t *buffer, int64_t length,
                              uint64_t base_offset, int64_t from_position);

#endif
