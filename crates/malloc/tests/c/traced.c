/* A small multi-threaded program for HEAPKIT_TRACE's test: three threads each allocate
 * 1000 blocks and hand them to main, which frees them (cross-thread frees), then a forked
 * child allocates (and must not write a trace of its own). Prints `ok traced`. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define THREADS 3
#define BLOCKS 1000

static void *blocks[THREADS][BLOCKS];

static void *work(void *arg) {
    long t = (long)arg;
    for (int i = 0; i < BLOCKS; i++) {
        blocks[t][i] = malloc(16 + (size_t)(i % 50) * 8);
        memset(blocks[t][i], (int)t, 16);
        if (i % 10 == 0) {
            blocks[t][i] = realloc(blocks[t][i], 1000);
        }
    }
    return NULL;
}

int main(void) {
    pthread_t threads[THREADS];
    for (long t = 0; t < THREADS; t++) {
        if (pthread_create(&threads[t], NULL, work, (void *)t) != 0) {
            return 1;
        }
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
    }
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < BLOCKS; i++) {
            free(blocks[t][i]);
        }
    }
    /* The child outlives the parent (it holds the test's output pipe, so the test waits
     * for it): a child that wrote the trace at its exit would overwrite the parent's. */
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        usleep(200 * 1000);
        for (int i = 0; i < 100; i++) {
            /* A size only the child asks for; volatile, or the pair is optimised away. */
            char *volatile block = malloc(777);
            block[0] = 1;
            free(block);
        }
        exit(0);
    }
    puts("ok traced");
    return 0;
}
