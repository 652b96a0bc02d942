/* Opens a loader over DIR/SPLIT and reads one epoch, for the bad-shard tests (test_shard_bad.py):
 * exit 0 when everything reads, 1 with the loader's message on stderr otherwise. */
#include <stdio.h>

#include "data/loader.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: shard_probe DIR SPLIT\n");
        return 2;
    }
    tw_loader_opts o;
    tw_loader_opts_default(&o);
    o.dir = argv[1];
    o.split = argv[2];
    o.global_batch = 1;
    o.shuffle = 0;
    tw_err err = {0};
    tw_loader *ld;
    if (tw_loader_init(&ld, &o, &err)) {
        fprintf(stderr, "shard_probe: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    for (int64_t s = 0; s < tw_loader_steps_per_epoch(ld); s++) {
        const tw_batch *b;
        if (tw_loader_next(ld, &b, &err)) {
            fprintf(stderr, "shard_probe: %s\n", err.msg);
            rc = 1;
            break;
        }
    }
    tw_loader_free(ld);
    return rc;
}
