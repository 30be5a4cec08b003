/* SPDX-License-Identifier: Apache-2.0
 * backend.c: picks a backend implementation by device name (backend layer). */
#include "inferd/backend.h"
#include "inferd/error.h"

#include <string.h>

int backend_create(struct backend **out, const struct backend_opts *opts, char *err, size_t errlen)
{
    *out = NULL;
    const char *dev = opts && opts->device ? opts->device : "cpu";
    if (strcmp(dev, "cpu") == 0) return cpu_backend_create(out, opts, err, errlen);
    if (strcmp(dev, "cuda") == 0)
        return ifd_fail(err, errlen, IFD_ERR_UNSUPPORTED, "--device cuda: the CUDA backend is not available in this build yet");
    return ifd_fail(err, errlen, IFD_ERR_INVALID, "unknown device '%s' (use cpu or cuda)", dev);
}

void backend_destroy(struct backend *be)
{
    if (be) be->ops->destroy(be);
}
