/* A library whose constructor registers a fork handler before heapkit-malloc's (a
 * program's own libraries are initialised before a preloaded one): its prepare handler
 * runs after ours, while our locks are held, and allocates on the paths that take them
 * (a huge block, fresh pages). It must not deadlock. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SMALL 4096
static void *huge;
static void *small[SMALL];

static void prepare(void) {
    huge = malloc(8 << 20);
    memset(huge, 1, 4096);
    for (int i = 0; i < SMALL; i++) {
        small[i] = malloc(1000 + (size_t)(i % 7) * 4096);
    }
}

static void after(void) {
    free(huge);
    for (int i = 0; i < SMALL; i++) {
        free(small[i]);
    }
}

__attribute__((constructor)) static void register_handlers(void) {
    pthread_atfork(prepare, after, after);
}
