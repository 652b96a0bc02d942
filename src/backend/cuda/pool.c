/* Pooling on the CUDA backend: ResNet's 3x3 / 2 max pool (padding 1) on NHWC, with the chosen
 * window position per output as the caller-owned per-call state, and the global average pool.
 * The kernels are kernels/pool.cu. */
#include <stdlib.h>

#include "backend/cuda/cuda_common.h"
#include "kernels/tw_kernels.h"

struct tw_pool_plan {
    tw_plan_head head;   /* x: [n, c, h, w], y: [n, c, oh, ow], NHWC; ws_bytes: 1 per output */
    int n, c, h, w;
};

tw_status tw_cuda_maxpool_plan_make(tw_backend *be, tw_pool_plan **out, int n, int c, int h,
                                    int w, tw_layout layout, tw_err *err) {
    *out = NULL;
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0)
        return tw_err_set(err, TW_E_SHAPE, "cuda max pool: bad shape [%d, %d, %d, %d]", n, c, h, w);
    if (layout != TW_LAYOUT_NHWC)
        return tw_err_set(err, TW_E_UNSUPPORTED, "cuda max pool: layout %s (the CUDA backend "
                          "keeps activations nhwc)", tw_layout_name(layout));
    tw_pool_plan *p = calloc(1, sizeof *p);
    if (!p) return tw_err_set(err, TW_E_NOMEM, "cuda max pool: out of host memory");
    int oh = (h + 2 - 3) / 2 + 1, ow = (w + 2 - 3) / 2 + 1;
    p->n = n;
    p->c = c;
    p->h = h;
    p->w = w;
    p->head.x = (tw_tensor){NULL, n, c, h, w, be->act_dtype, TW_LAYOUT_NHWC};
    p->head.y = (tw_tensor){NULL, n, c, oh, ow, be->act_dtype, TW_LAYOUT_NHWC};
    p->head.ws_bytes = (size_t)n * c * oh * ow;
    *out = p;
    return TW_OK;
}

void tw_cuda_maxpool_plan_free(tw_backend *be, tw_pool_plan *p) {
    (void)be;
    free(p);
}

void tw_cuda_maxpool_forward(tw_backend *be, tw_pool_plan *p, tw_tensor *y, void *ws,
                             const tw_tensor *x) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    const tw_tensor *e = &p->head.y;
    TW_CHECK_CUDA(tw_k_maxpool_forward(cb->stream, tw_cuda_grid(cb, p->head.ws_bytes), y->data,
                                       ws, x->data, cb->bf16, p->n, p->c, p->h, p->w, e->h, e->w));
}

/* dx (=). */
void tw_cuda_maxpool_backward(tw_backend *be, tw_pool_plan *p, tw_tensor *dx, const tw_tensor *dy,
                              const void *ws) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    const tw_tensor *e = &p->head.y;
    size_t n_in = (size_t)p->n * p->c * p->h * p->w;
    TW_CHECK_CUDA(tw_k_maxpool_backward(cb->stream, tw_cuda_grid(cb, n_in), dx->data, dy->data, ws,
                                        cb->bf16, p->n, p->c, p->h, p->w, e->h, e->w));
}

static int plain_nhwc(const tw_tensor *t) {
    TW_ASSERT(t->layout == TW_LAYOUT_NHWC || t->layout == TW_LAYOUT_NCHW);
    return t->layout == TW_LAYOUT_NHWC;
}

/* y: [n, c] f32. */
void tw_cuda_avgpool_forward(tw_backend *be, float *y, const tw_tensor *x) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    TW_CHECK_CUDA(tw_k_avgpool_forward(cb->stream, y, x->data, x->dtype == TW_BF16, plain_nhwc(x),
                                       x->n, x->c, x->h, x->w));
}

/* dx (=) = dy / (h w) broadcast over the plane. */
void tw_cuda_avgpool_backward(tw_backend *be, tw_tensor *dx, const float *dy) {
    tw_cuda_backend *cb = tw_cuda_of(be);
    size_t n_elems = (size_t)dx->n * dx->c * dx->h * dx->w;
    TW_CHECK_CUDA(tw_k_avgpool_backward(cb->stream, tw_cuda_grid(cb, n_elems), dx->data, dy,
                                        dx->dtype == TW_BF16, plain_nhwc(dx), dx->n, dx->c, dx->h,
                                        dx->w));
}
