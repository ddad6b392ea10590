#pragma once
#include <stdint.h>
#include <stddef.h>
#include <isa-l/igzip_lib.h>

/* Our own code, distinct from every ISAL_* return value. */
#define QB_ISAL_READ_AHEAD_LOST (-100)

/* Swift touches struct inflate_state (about 100 KiB) only through these
   helpers, so it never copies the state or spells its union and enums. */

/* Prepares the state for one gzip member (RFC 1952): header parsed, CRC-32 and
   ISIZE of the trailer checked by the library. */
static inline void qb_isal_begin_gzip_member(struct inflate_state *state) {
    isal_inflate_reset(state);
    state->crc_flag = ISAL_GZIP;
    state->hist_bits = 0; /* 0 = the full 32 KiB deflate window */
}

/* One isal_inflate call over the given buffers; reports what it consumed and
   produced. *member_done is 1 once the member's trailer has been checked and
   all its output delivered. Bytes the library had read ahead into its bit
   buffer are handed back to the input (by rewinding *consumed), so the next
   member starts at the right byte; returns QB_ISAL_READ_AHEAD_LOST if that cannot
   be done because they came from an earlier call's input. */
static inline int qb_isal_inflate(struct inflate_state *state,
                                  const void *in, uint32_t in_len,
                                  void *out, uint32_t out_len,
                                  uint32_t *consumed, uint32_t *produced,
                                  int *member_done) {
    state->next_in = (uint8_t *)in;
    state->avail_in = in_len;
    state->next_out = (uint8_t *)out;
    state->avail_out = out_len;
    int ret = isal_inflate(state);
    uint32_t used = in_len - state->avail_in;
    *produced = out_len - state->avail_out;
    *member_done = state->block_state == ISAL_BLOCK_FINISH;
    if (ret >= 0 && *member_done && state->read_in_length >= 8) {
        uint32_t buffered = (uint32_t)state->read_in_length / 8;
        if (buffered > used) {
            ret = QB_ISAL_READ_AHEAD_LOST;
        } else {
            used -= buffered;
            state->read_in = 0;
            state->read_in_length = 0;
        }
    }
    *consumed = used;
    return ret;
}

#include <isa-l/crc.h>

/* Linux's crc32c(seed, data): ISA-L's crc32_iscsi already has those
   conventions (no inversion in or out); its length is an int, so long
   buffers go in pieces. */
static inline uint32_t qb_crc32c(uint32_t crc, const void *data, size_t len) {
    const unsigned char *p = (const unsigned char *)data;
    while (len > 0) {
        int piece = len > (1u << 30) ? (1 << 30) : (int)len;
        crc = crc32_iscsi((unsigned char *)p, piece, crc);
        p += piece;
        len -= (size_t)piece;
    }
    return crc;
}

/* zlib's CRC-32 (what GPT uses); ISA-L's gzip CRC is the same function. */
static inline uint32_t qb_crc32_ieee(const void *data, size_t len) {
    return crc32_gzip_refl(0, (const unsigned char *)data, (uint64_t)len);
}
