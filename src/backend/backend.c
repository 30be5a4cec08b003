/* SPDX-License-Identifier: Apache-2.0
 * backend.c: picks a backend implementation by device name: "cpu", or "cuda" /
 * "cuda:N" when the build has the CUDA backend (INFERD_HAVE_CUDA, set by CMake
 * when nvcc is found); otherwise "cuda" gets a clear error. Also the host
 * buffers device copies land in (backend layer). */
#include "inferd/backend.h"
#include "inferd/error.h"

#include <stdlib.h>
#include <string.h>

int backend_create(struct backend **out, const struct backend_opts *opts, char *err, size_t errlen)
{
    *out = NULL;
    const char *dev = opts && opts->device ? opts->device : "cpu";
    if (strcmp(dev, "cpu") == 0) return cpu_backend_create(out, opts, err, errlen);
    if (strcmp(dev, "cuda") == 0 || strncmp(dev, "cuda:", 5) == 0) {
#ifdef INFERD_HAVE_CUDA
        return cuda_backend_create(out, opts, err, errlen);
#else
        return ifd_fail(err, errlen, IFD_ERR_UNSUPPORTED,
                        "--device cuda: this build has no CUDA backend "
                        "(it was configured without nvcc or with -DINFERD_CUDA=OFF)");
#endif
    }
    return ifd_fail(err, errlen, IFD_ERR_INVALID, "unknown device '%s' (use cpu, cuda or cuda:N)", dev);
}

void backend_destroy(struct backend *be)
{
    if (be) be->ops->destroy(be);
}

void *backend_host_alloc(struct backend *be, size_t nbytes)
{
    return be->ops->host_alloc ? be->ops->host_alloc(be, nbytes) : malloc(nbytes);
}

void backend_host_free(struct backend *be, void *p)
{
    if (!p) return;
    if (be->ops->host_free) be->ops->host_free(be, p);
    else free(p);
}
