#pragma once
#include <zlib.h>

/* inflateInit2 is a macro. 16 + 15: gzip wrapper only (RFC 1952), 32 KiB
   window; zlib then checks the trailer's CRC-32 and ISIZE itself. */
static inline int qb_inflate_init_gzip(z_streamp strm) {
    return inflateInit2(strm, 16 + MAX_WBITS);
}
