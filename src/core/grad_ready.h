/* "These gradients are final": how a model's backward tells whoever reduces the gradients over
 * the ranks (dist/buckets.h) that a range of the flat gradient buffer will not change again in
 * this step, so its all-reduce can start while backward goes on. Model code takes one of these
 * instead of a communicator, as it takes a tw_reducer (core/reducer.h). */
#ifndef TW_GRAD_READY_H
#define TW_GRAD_READY_H

#include <stddef.h>

typedef struct tw_grad_ready {
    /* Every gradient at arena offset >= lo (elements into tw_params' grads) is final for this
     * step. Called with non-increasing lo (backward runs from the arena's end to its start); a
     * call with an unchanged lo only gives pending reductions a chance to progress. */
    void (*ready)(void *ctx, size_t lo);
    void *ctx;
} tw_grad_ready;

/* r may be NULL: nobody is listening. */
static inline void tw_grad_ready_at(const tw_grad_ready *r, size_t lo) {
    if (r) r->ready(r->ctx, lo);
}

#endif
