/* Record framing; framing.h describes the format and the contracts. */
#include "framing.h"

#include <string.h>

#include "xxh32.h"

/* Bytes of a header that the checksum covers: length and type. */
#define CHECKED_HEADER_BYTES 3

static uint32_t read_le32(const uint8_t *bytes)
{
    return (uint32_t)bytes[0] | ((uint32_t)bytes[1] << 8) |
           ((uint32_t)bytes[2] << 16) | ((uint32_t)bytes[3] << 24);
}

static uint32_t read_le16(const uint8_t *bytes)
{
    return (uint32_t)bytes[0] | ((uint32_t)bytes[1] << 8);
}

static void write_le32(uint8_t *bytes, uint32_t value)
{
    bytes[0] = (uint8_t)(value & 0xffu);
    bytes[1] = (uint8_t)((value >> 8) & 0xffu);
    bytes[2] = (uint8_t)((value >> 16) & 0xffu);
    bytes[3] = (uint8_t)((value >> 24) & 0xffu);
}

/* Returns the offset inside its block of buffer index `position`. Both
 * terms are reduced first, so the sum cannot overflow. */
static int64_t offset_in_block(uint64_t base_offset, int64_t position)
{
    uint64_t sum = base_offset % SK_BLOCK_SIZE + (uint64_t)position % SK_BLOCK_SIZE;
    return (int64_t)(sum % SK_BLOCK_SIZE);
}

uint64_t sk_framed_size(int64_t length, int64_t block_offset)
{
    const int64_t fragment_capacity = SK_BLOCK_SIZE - SK_HEADER_SIZE;
    uint64_t total = 0;
    int64_t left, take, rest, fragments;

    if (length < 0 || block_offset < 0 || block_offset >= SK_BLOCK_SIZE)
        return 0;

    left = SK_BLOCK_SIZE - block_offset;
    if (left < SK_HEADER_SIZE) {
        total += (uint64_t)left;
        left = SK_BLOCK_SIZE;
    }
    take = length < left - SK_HEADER_SIZE ? length : left - SK_HEADER_SIZE;
    total += (uint64_t)(SK_HEADER_SIZE + take);

    /* The first fragment filled its block, so every later fragment starts
     * a block and takes up to fragment_capacity payload bytes. */
    rest = length - take;
    if (rest > 0) {
        fragments = rest / fragment_capacity + (rest % fragment_capacity != 0);
        total += (uint64_t)rest + (uint64_t)fragments * SK_HEADER_SIZE;
    }
    return total;
}

int64_t sk_frame(const uint8_t *payload, int64_t length, int64_t block_offset,
                 uint8_t *out, int64_t out_capacity)
{
    uint64_t needed = sk_framed_size(length, block_offset);
    int64_t written = 0;
    int64_t position = 0;
    int first = 1;

    if (needed == 0 || out == NULL || (payload == NULL && length > 0) ||
        out_capacity < 0 || (uint64_t)out_capacity < needed)
        return SK_INVALID_ARGUMENT;

    while (first || position < length) {
        int64_t left = SK_BLOCK_SIZE - block_offset;
        int64_t take;
        int last;
        uint8_t type;
        uint8_t *header;

        if (left < SK_HEADER_SIZE) {
            memset(out + written, 0, (size_t)left);
            written += left;
            block_offset = 0;
            left = SK_BLOCK_SIZE;
        }
        take = length - position;
        if (take > left - SK_HEADER_SIZE)
            take = left - SK_HEADER_SIZE;
        last = position + take == length;
        if (first)
            type = last ? SK_FULL : SK_FIRST;
        else
            type = last ? SK_LAST : SK_MIDDLE;
        first = 0;

        /* Length and type sit right before the payload copy, so one pass
         * of xxh32 over out[header + 4 ..] covers all checksummed bytes. */
        header = out + written;
        header[4] = (uint8_t)(take & 0xff);
        header[5] = (uint8_t)((take >> 8) & 0xff);
        header[6] = type;
        if (take > 0)
            memcpy(header + SK_HEADER_SIZE, payload + position, (size_t)take);
        write_le32(header, sk_xxh32(header + 4, (size_t)(CHECKED_HEADER_BYTES + take), 0));

        position += take;
        written += SK_HEADER_SIZE + take;
        block_offset += SK_HEADER_SIZE + take;
    }
    return written;
}

static void finish_scan(sk_scan_result *result, int64_t count, int64_t next_position,
                        int32_t status, int64_t bad_position, int32_t reason)
{
    result->count = count;
    result->next_position = next_position;
    result->status = status;
    result->bad_position = bad_position;
    result->reason = reason;
}

int sk_scan(const uint8_t *buffer, int64_t length, int64_t start,
            uint64_t base_offset, sk_fragment *fragments, int64_t capacity,
            sk_scan_result *result)
{
    /* Fragments [0, committed) form whole records; [committed, used) belong
     * to the record in progress, which starts at record_start. */
    int64_t committed = 0;
    int64_t used = 0;
    int64_t record_start = start;
    int64_t position = start;

    if (result == NULL || length < 0 || (buffer == NULL && length > 0) ||
        start < 0 || start > length || capacity < 0 ||
        (fragments == NULL && capacity > 0))
        return SK_INVALID_ARGUMENT;

    while (position < length) {
        int64_t block_left = SK_BLOCK_SIZE - offset_in_block(base_offset, position);
        const uint8_t *header;
        uint32_t stored, payload_length, type;
        int64_t payload_start;
        int in_record;

        if (block_left < SK_HEADER_SIZE) {
            /* Block trailer: skipped whether or not it is all zeros. */
            position += block_left < length - position ? block_left : length - position;
            if (used == committed)
                record_start = position;
            continue;
        }
        if (length - position < SK_HEADER_SIZE) {
            finish_scan(result, committed, record_start, SK_STATUS_TRUNCATED, -1, SK_REASON_NONE);
            return 0;
        }

        header = buffer + position;
        stored = read_le32(header);
        payload_length = read_le16(header + 4);
        type = header[6];
        if (stored == 0 && payload_length == 0 && type == 0) {
            finish_scan(result, committed, record_start, SK_STATUS_CORRUPT, position, SK_REASON_ZEROS);
            return 0;
        }
        if (type < SK_FULL || type > SK_LAST) {
            finish_scan(result, committed, record_start, SK_STATUS_CORRUPT, position, SK_REASON_BAD_TYPE);
            return 0;
        }
        if (SK_HEADER_SIZE + (int64_t)payload_length > block_left) {
            finish_scan(result, committed, record_start, SK_STATUS_CORRUPT, position, SK_REASON_BAD_LENGTH);
            return 0;
        }
        payload_start = position + SK_HEADER_SIZE;
        if ((int64_t)payload_length > length - payload_start) {
            finish_scan(result, committed, record_start, SK_STATUS_TRUNCATED, -1, SK_REASON_NONE);
            return 0;
        }
        if (sk_xxh32(header + 4, CHECKED_HEADER_BYTES + (size_t)payload_length, 0) != stored) {
            finish_scan(result, committed, record_start, SK_STATUS_CORRUPT, position, SK_REASON_CHECKSUM);
            return 0;
        }
        in_record = used > committed;
        if ((type == SK_FULL || type == SK_FIRST) == in_record) {
            /* FULL and FIRST must start a record; MIDDLE and LAST continue one. */
            finish_scan(result, committed, record_start, SK_STATUS_CORRUPT, position, SK_REASON_ORDER);
            return 0;
        }
        if (used == capacity) {
            finish_scan(result, committed, record_start, SK_STATUS_FULL, -1, SK_REASON_NONE);
            return 0;
        }

        fragments[used].payload_start = payload_start;
        fragments[used].payload_length = (int64_t)payload_length;
        fragments[used].type = (int64_t)type;
        used += 1;
        position = payload_start + (int64_t)payload_length;
        if (type == SK_FULL || type == SK_LAST) {
            committed = used;
            record_start = position;
        }
    }
    if (used > committed)
        finish_scan(result, committed, record_start, SK_STATUS_TRUNCATED, -1, SK_REASON_NONE);
    else
        finish_scan(result, committed, position, SK_STATUS_OK, -1, SK_REASON_NONE);
    return 0;
}

int64_t sk_first_valid_header(const uint8_t *buffer, int64_t length,
                              uint64_t base_offset, int64_t from_position)
{
    int64_t inside, position;

    if (length < 0 || (buffer == NULL && length > 0) || from_position < 0)
        return SK_INVALID_ARGUMENT;
    if (from_position > length - SK_HEADER_SIZE)
        return -1;

    /* Round up to the next block start, counted in file offsets. Here
     * from_position < length, so adding less than a block cannot overflow
     * for any buffer that fits in memory. */
    inside = offset_in_block(base_offset, from_position);
    position = from_position;
    if (inside != 0)
        position += SK_BLOCK_SIZE - inside;

    while (position <= length - SK_HEADER_SIZE) {
        const uint8_t *header = buffer + position;
        uint32_t payload_length = read_le16(header + 4);
        uint32_t type = header[6];

        if (type >= SK_FULL && type <= SK_LAST &&
            payload_length <= SK_BLOCK_SIZE - SK_HEADER_SIZE &&
            (int64_t)payload_length <= length - position - SK_HEADER_SIZE &&
            sk_xxh32(header + 4, CHECKED_HEADER_BYTES + (size_t)payload_length, 0) ==
                read_le32(header))
            return position;
        if (position > INT64_MAX - SK_BLOCK_SIZE)
            break;
        position += SK_BLOCK_SIZE;
    }
    return -1;
}
