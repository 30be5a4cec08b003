/* SPDX-License-Identifier: Apache-2.0
 * error.c: ifd_strerror and the ifd_fail helper (util layer). */
#include "inferd/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *ifd_strerror(int err)
{
    switch (err) {
    case IFD_OK: return "success";
    case IFD_ERR_NOMEM: return "out of memory";
    case IFD_ERR_IO: return "I/O error";
    case IFD_ERR_FORMAT: return "invalid or corrupt format";
    case IFD_ERR_UNSUPPORTED: return "unsupported";
    case IFD_ERR_INVALID: return "invalid argument";
    case IFD_ERR_RANGE: return "out of range";
    case IFD_ERR_NOT_FOUND: return "not found";
    case IFD_ERR_FULL: return "full";
    case IFD_ERR_CANCELLED: return "cancelled";
    case IFD_ERR_INTERNAL: return "internal error";
    default: return "unknown error";
    }
}

int ifd_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}
