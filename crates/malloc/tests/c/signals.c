/* signals.c - a signal handler that allocates and frees while the interrupted thread is
 * in the middle of malloc or free: the handler finds the thread's heap busy and takes the
 * locked shared heap, so neither corrupts the other's free lists. (Found by review: the
 * fast paths once skipped the busy flag and this crashed within a second.) Only the
 * thread-cache paths are covered: a handler that interrupts a thread holding one of the
 * heap's locks and then allocates waits for itself, as with glibc. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define RING 64
static void *ring[RING];
static volatile int next_in_ring;
static pthread_t main_thread;
static volatile int stop;

static void handler(int signal_number)
{
    (void)signal_number;
    int i = next_in_ring++ % RING;
    free(ring[i]);
    ring[i] = malloc(24);
    if (ring[i])
        memset(ring[i], 0xEE, 24);
}

static void *kicker(void *unused)
{
    (void)unused;
    while (!stop)
        pthread_kill(main_thread, SIGUSR1);
    return NULL;
}

int main(void)
{
    main_thread = pthread_self();
    /* The thread's heap and its page of 32-byte blocks are set up before any signal
     * comes: a handler that interrupted the mapping of a segment, and then needed one
     * itself, would wait for a lock its own thread holds. */
    void *blocks[256];
    for (int j = 0; j < 256; j++)
        blocks[j] = malloc(24);
    for (int j = 0; j < 256; j++)
        free(blocks[j]);
    signal(SIGUSR1, handler);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, kicker, NULL) == 0, "pthread_create");
    for (long round = 0; round < 20000; round++) {
        for (int j = 0; j < 256; j++) {
            blocks[j] = malloc(24);
            CHECK(blocks[j] != NULL, "malloc(24) failed");
            memset(blocks[j], j, 24);
        }
        for (int j = 0; j < 256; j++) {
            unsigned char *bytes = blocks[j];
            for (int x = 0; x < 24; x++)
                CHECK(bytes[x] == (unsigned char)j, "round %ld: block %d overwritten", round, j);
            free(bytes);
        }
    }
    stop = 1;
    pthread_join(thread, NULL);
    printf("ok signals\n");
    return 0;
}
