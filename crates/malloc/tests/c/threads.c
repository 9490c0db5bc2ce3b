/* threads.c - cross-thread frees under contention.
 *
 * NTHR threads form a ring: thread t allocates blocks, fills them with a
 * pattern keyed by (producer, sequence number) and hands them to thread t+1,
 * which verifies and frees them.  So nearly every free() happens on a thread
 * other than the allocating one: the path a per-thread cache allocator gets
 * wrong most easily (remote frees, ownership, reuse).  A bitmap proves each
 * block arrived exactly once: a block lost or delivered twice is a failure. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NTHR 4
#define PER_THREAD 200000 /* blocks each thread produces (and consumes) */
#define RING 256          /* slots per inbox: bounds the memory in flight */
#define BATCH 32          /* items moved per lock acquisition */

#include "check.h"

struct item {
    unsigned char *p;
    size_t len;
    uint32_t producer, seq;
};

/* One inbox per thread; a single global lock and condvar keep the protocol
 * obviously deadlock-free (a waiter is woken by any change anywhere), and the
 * lock is held only to move pointers, never while touching block memory. */
struct inbox {
    struct item slot[RING];
    size_t head, count;
};
static struct inbox inbox[NTHR];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static unsigned char seen[NTHR][PER_THREAD / 8]; /* written under `lock` */

/* Position- and identity-keyed bytes: a block handed over with another
 * block's contents, or with its tail clobbered by a neighbour, fails. */
static unsigned char pat(uint32_t key, size_t i)
{
    return (unsigned char)(key * 2654435761u + i * 31 + (i >> 9));
}
static void fill(unsigned char *p, uint32_t key, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) p[i] = pat(key, i);
}

static uint32_t rnd(uint64_t *s) /* per-thread xorshift: no shared state */
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 16);
}

static size_t pick_size(uint64_t *s)
{
    /* ~1% large blocks to mix the large/mmap path into the small-class churn */
    return rnd(s) % 100 == 0 ? 100000 : 1 + rnd(s) % 2000;
}

static struct item produce(uint32_t me, uint32_t seq, uint64_t *s)
{
    struct item it = {NULL, pick_size(s), me, seq};
    uint32_t key = me * PER_THREAD + seq;
    if (rnd(s) % 8 == 0) {
        /* Grow in steps with realloc; the prefix must survive every move. */
        size_t len = 1 + rnd(s) % 64;
        it.p = malloc(len);
        CHECK(it.p, "malloc(%zu)", len);
        fill(it.p, key, 0, len);
        while (len < it.len) {
            size_t next = len * 3 < it.len ? len * 3 : it.len;
            unsigned char *q = realloc(it.p, next);
            CHECK(q, "realloc(%zu)", next);
            for (size_t i = 0; i < len; i++)
                CHECK(q[i] == pat(key, i), "realloc %zu->%zu lost byte %zu", len, next, i);
            fill(q, key, len, next);
            it.p = q;
            len = next;
        }
    } else {
        it.p = malloc(it.len);
        CHECK(it.p, "malloc(%zu)", it.len);
        fill(it.p, key, 0, it.len);
    }
    return it;
}

static void consume(const struct item *it)
{
    uint32_t key = it->producer * PER_THREAD + it->seq;
    for (size_t i = 0; i < it->len; i++)
        CHECK(it->p[i] == pat(key, i), "block %u/%u (len %zu) byte %zu corrupt",
              it->producer, it->seq, it->len, i);
    free(it->p); /* usually not the thread that allocated it */
}

static void *worker(void *arg)
{
    uint32_t me = (uint32_t)(uintptr_t)arg;
    struct inbox *mine = &inbox[me], *next = &inbox[(me + 1) % NTHR];
    uint64_t s = 0x9E3779B97F4A7C15ull * (me + 1);
    uint32_t produced = 0, consumed = 0;
    struct item got[BATCH], out[BATCH];

    while (produced < PER_THREAD || consumed < PER_THREAD) {
        size_t ngot = 0, room = 0;
        pthread_mutex_lock(&lock);
        /* Sleep only when there is nothing to eat and nowhere to put output.
         * Cannot deadlock: if every thread sleeps, every inbox is empty, so
         * no inbox is full, so all are done producing, so all consumed. */
        while (mine->count == 0 && (produced == PER_THREAD || next->count == RING))
            pthread_cond_wait(&changed, &lock);
        while (ngot < BATCH && mine->count > 0) {
            struct item *it = &mine->slot[mine->head];
            unsigned char *bit = &seen[it->producer][it->seq / 8];
            CHECK(!(*bit & (1u << (it->seq % 8))), "block %u/%u delivered twice",
                  it->producer, it->seq);
            *bit |= (unsigned char)(1u << (it->seq % 8));
            got[ngot++] = *it;
            mine->head = (mine->head + 1) % RING;
            mine->count--;
        }
        if (produced < PER_THREAD) room = RING - next->count; /* only we fill it */
        if (ngot) pthread_cond_broadcast(&changed); /* our producer may push */
        pthread_mutex_unlock(&lock);

        for (size_t i = 0; i < ngot; i++) consume(&got[i]);
        consumed += (uint32_t)ngot;

        size_t nout = room < BATCH ? room : BATCH;
        if (nout > PER_THREAD - produced) nout = PER_THREAD - produced;
        for (size_t i = 0; i < nout; i++) out[i] = produce(me, produced + (uint32_t)i, &s);
        if (nout) {
            pthread_mutex_lock(&lock);
            for (size_t i = 0; i < nout; i++)
                next->slot[(next->head + next->count++) % RING] = out[i];
            pthread_cond_broadcast(&changed);
            pthread_mutex_unlock(&lock);
            produced += (uint32_t)nout;
        }
    }
    return NULL;
}

int main(void)
{
    pthread_t th[NTHR];
    for (uintptr_t t = 0; t < NTHR; t++)
        CHECK(pthread_create(&th[t], NULL, worker, (void *)t) == 0, "pthread_create");
    for (int t = 0; t < NTHR; t++) CHECK(pthread_join(th[t], NULL) == 0, "pthread_join");

    /* Duplicates were caught on arrival; here catch blocks that never came. */
    size_t total = 0;
    for (int t = 0; t < NTHR; t++) {
        CHECK(inbox[t].count == 0, "inbox %d not drained", t);
        for (uint32_t q = 0; q < PER_THREAD; q++) {
            CHECK(seen[t][q / 8] & (1u << (q % 8)), "block %d/%u never verified", t, q);
            total++;
        }
    }
    CHECK(total == (size_t)NTHR * PER_THREAD, "verified %zu blocks", total);
    printf("ok threads\n");
    return 0;
}
