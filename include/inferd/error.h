/* SPDX-License-Identifier: Apache-2.0
 *
 * error.h: the project-wide error codes.
 *
 * Every fallible function below main.c returns 0 or one of these negative codes
 * (never exit()/abort(), which are reserved for programming errors via assert).
 * Functions whose failures need a human-readable reason (a corrupt model file,
 * a bad flag) also fill a caller-provided message buffer; the code says *what
 * kind* of failure it was, the message says *what exactly* was wrong.
 */
#ifndef INFERD_ERROR_H
#define INFERD_ERROR_H

#include <stddef.h>

enum ifd_err {
    IFD_OK = 0,
    IFD_ERR_NOMEM = -1,       /* allocation failed or would be unreasonably large */
    IFD_ERR_IO = -2,          /* open/read/mmap failed */
    IFD_ERR_FORMAT = -3,      /* input file is corrupt or not what it claims to be */
    IFD_ERR_UNSUPPORTED = -4, /* well-formed but not something we implement */
    IFD_ERR_INVALID = -5,     /* bad argument or configuration value */
    IFD_ERR_RANGE = -6,       /* value out of the allowed range (e.g. over the context) */
    IFD_ERR_NOT_FOUND = -7,   /* a named thing (key, tensor, file) does not exist */
    IFD_ERR_FULL = -8,        /* a bounded queue or pool has no room */
    IFD_ERR_CANCELLED = -9,   /* the operation was cancelled by its owner */
    IFD_ERR_INTERNAL = -10,   /* a bug: an invariant did not hold */
};

/* Static description of an error code ("out of memory", ...). */
const char *ifd_strerror(int err);

/* Writes printf-style text into err[errlen] (if err is not NULL) and returns code.
 * Lets error paths read as one line: return ifd_fail(err, errlen, IFD_ERR_FORMAT, "...", ...); */
int ifd_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
