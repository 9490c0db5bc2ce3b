/* edges.c - edge cases of every allocator entry point, glibc semantics.
 *
 * Built and passing against plain glibc; the same binary is then run with
 * LD_PRELOAD=libheapkit_malloc.so, so any difference is a bug in the
 * replacement, not in this program. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#define ALIGNED(p, a) (((uintptr_t)(p) & ((uintptr_t)(a) - 1)) == 0)

/* C23; glibc 2.36 lacks them.  Weak so the program links either way and can
 * exercise them when the preloaded allocator provides them. */
extern void free_sized(void *, size_t) __attribute__((weak));
extern void free_aligned_sized(void *, size_t, size_t) __attribute__((weak));

/* volatile: keep gcc from folding these into -Walloc-size-larger-than */
static volatile size_t huge = SIZE_MAX, half = SIZE_MAX / 2,
                       ptrdiff_max1 = (size_t)PTRDIFF_MAX + 1;

static uint32_t lcg_state = 12345;
static uint32_t lcg(void) /* fixed sequence: failures must be reproducible */
{
    lcg_state = lcg_state * 1103515245u + 12345u;
    return lcg_state >> 8;
}

/* Byte pattern keyed by position, so a block moved by realloc to a wrong
 * offset is caught, not just one that lost its bytes. */
static unsigned char pat(size_t i) { return (unsigned char)(i * 7 + (i >> 8) + 1); }
static void fill(unsigned char *p, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) p[i] = pat(i);
}
static void expect(const unsigned char *p, size_t n, int line)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != pat(i)) fail(__FILE__, line, "byte %zu of %zu lost", i, n);
}

static void test_malloc_free(void)
{
    void *a = malloc(0), *b = malloc(0);
    CHECK(a && b && a != b, "malloc(0) must give unique non-NULL pointers");
    free(a), free(b);
    free(NULL); /* must be a no-op */

    for (size_t n = 1; n <= 4096; n++) {
        unsigned char *p = malloc(n);
        CHECK(p, "malloc(%zu) failed", n);
        /* Fundamental alignment only for objects that can hold a max_align_t;
         * smaller requests need the largest power of two that fits. */
        size_t need = 1;
        while (need * 2 <= n && need < 16) need *= 2;
        CHECK(ALIGNED(p, need), "malloc(%zu)=%p not %zu-aligned", n, (void *)p, need);
        fill(p, 0, n);
        expect(p, n, __LINE__);
        free(p);
    }
    errno = 0;
    CHECK(malloc(huge) == NULL && errno == ENOMEM, "malloc(SIZE_MAX) errno=%d", errno);
    errno = 0;
    CHECK(malloc(ptrdiff_max1) == NULL && errno == ENOMEM,
          "malloc(PTRDIFF_MAX+1) errno=%d", errno);
}

static void test_calloc(void)
{
    /* A recycled dirty block must still come back zeroed: catches a calloc
     * that skips the memset because it assumes fresh (mmap'd) memory. */
    static const size_t sizes[] = {1, 16, 100, 1024, 4000, 70000, 300000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (int round = 0; round < 50; round++) {
            unsigned char *d = malloc(sizes[s]);
            CHECK(d, "malloc(%zu)", sizes[s]);
            memset(d, 0xAB, sizes[s]);
            free(d);
            unsigned char *z = calloc(1, sizes[s]);
            CHECK(z, "calloc(1,%zu)", sizes[s]);
            for (size_t i = 0; i < sizes[s]; i++)
                CHECK(z[i] == 0, "calloc(1,%zu) byte %zu = %#x", sizes[s], i, z[i]);
            free(z);
        }
    }
    errno = 0;
    CHECK(calloc(half, 3) == NULL && errno == ENOMEM, "calloc overflow errno=%d", errno);
    free(calloc(0, 5)); /* NULL or unique pointer: either must be freeable */
}

static void test_realloc(void)
{
    unsigned char *p = realloc(NULL, 64); /* realloc(NULL, n) == malloc(n) */
    CHECK(p, "realloc(NULL, 64)");
    fill(p, 0, 64);
    p = realloc(p, 0); /* glibc frees and returns NULL; others may not */
    free(p);

    /* Grow across every size regime (small class, large, mmap) and back. */
    static const size_t steps[] = {1, 10, 100, 1000, 100000, 5000000,
                                   100000, 1000, 100, 10, 1};
    size_t cur = 0;
    p = NULL;
    for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
        size_t n = steps[s];
        unsigned char *q = realloc(p, n);
        CHECK(q, "realloc to %zu", n);
        expect(q, cur < n ? cur : n, __LINE__);
        fill(q, cur < n ? cur : 0, n);
        p = q;
        cur = n;
    }
    /* A failed realloc must leave the original block alive and intact. */
    p = realloc(p, 1000);
    CHECK(p, "realloc 1000");
    fill(p, 0, 1000);
    errno = 0;
    CHECK(realloc(p, huge) == NULL && errno == ENOMEM, "realloc(p,SIZE_MAX) errno=%d", errno);
    expect(p, 1000, __LINE__);

    errno = 0;
    CHECK(reallocarray(p, half, 3) == NULL && errno == ENOMEM,
          "reallocarray overflow errno=%d", errno);
    expect(p, 1000, __LINE__);
    unsigned char *q = reallocarray(p, 500, 4);
    CHECK(q, "reallocarray(p, 500, 4)");
    expect(q, 1000, __LINE__);
    free(q);

    /* A block grown in small steps (redis adds a few hundred bytes to a listpack at a
     * time) mostly stays where it is: a moved block is given room to grow. Without that
     * room it moved at 22 of these 30 steps; glibc's heap moves it at none. */
    unsigned char *grown = malloc(260);
    CHECK(grown, "malloc(260)");
    int moves = 0;
    for (size_t size = 520; size <= 8192; size += 260) {
        unsigned char *next = realloc(grown, size);
        CHECK(next, "realloc to %zu", size);
        moves += next != grown;
        grown = next;
    }
    CHECK(moves <= 12, "a block grown 260 bytes at a time moved %d times in 30 steps", moves);
    free(grown);
}

static void test_aligned(void)
{
    static const size_t aligns[] = {8, 16, 32, 64, 4096, 65536, 1 << 20};
    for (size_t i = 0; i < sizeof aligns / sizeof *aligns; i++) {
        void *p = NULL;
        int rc = posix_memalign(&p, aligns[i], 1000);
        CHECK(rc == 0 && p && ALIGNED(p, aligns[i]), "posix_memalign(%zu) rc=%d", aligns[i], rc);
        memset(p, 0x5A, 1000);
        free(p);
    }
    /* POSIX: bad alignment reports through the return value only; errno and
     * *memptr are left alone. */
    static const size_t bad[] = {0, 3, 24, sizeof(void *) / 2};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *p = (void *)&lcg_state;
        errno = 12345;
        int rc = posix_memalign(&p, bad[i], 100);
        CHECK(rc == EINVAL, "posix_memalign(align %zu) rc=%d", bad[i], rc);
        CHECK(errno == 12345, "posix_memalign(align %zu) changed errno to %d", bad[i], errno);
        CHECK(p == (void *)&lcg_state, "posix_memalign(align %zu) wrote *memptr", bad[i]);
    }
    void *p = (void *)&lcg_state;
    errno = 12345;
    int rc = posix_memalign(&p, 64, huge);
    CHECK(rc == ENOMEM, "posix_memalign(64, SIZE_MAX) rc=%d", rc);
    CHECK(p == (void *)&lcg_state, "posix_memalign(64, SIZE_MAX) wrote *memptr");
    CHECK(errno == 12345, "posix_memalign(64, SIZE_MAX) changed errno to %d", errno);

    void *a = aligned_alloc(64, 100), *b = aligned_alloc(4096, 4096);
    CHECK(a && ALIGNED(a, 64) && b && ALIGNED(b, 4096), "aligned_alloc");
    memset(a, 1, 100), memset(b, 1, 4096);
    free(a), free(b);
    a = memalign(32, 100);
    CHECK(a && ALIGNED(a, 32), "memalign(32, 100)");
    free(a);
    volatile size_t odd = 24; /* glibc rounds up to the next power of two */
    a = memalign(odd, 100);
    CHECK(a == NULL || ALIGNED(a, 32), "memalign(24) = %p not 32-aligned", a);
    free(a);

    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    a = valloc(100);
    CHECK(a && ALIGNED(a, page), "valloc(100)");
    free(a);
    a = pvalloc(100); /* rounds the size up to a whole page */
    CHECK(a && ALIGNED(a, page), "pvalloc(100)");
    CHECK(malloc_usable_size(a) >= page, "pvalloc usable %zu < page", malloc_usable_size(a));
    memset(a, 2, page);
    free(a);
}

static void test_usable_and_sized(void)
{
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL)");
    for (size_t n = 1; n < 5000; n += 37) {
        unsigned char *p = malloc(n);
        size_t u = malloc_usable_size(p);
        CHECK(p && u >= n, "usable(%zu) = %zu", n, u);
        memset(p, 0xCD, u); /* the whole usable size is ours to write */
        free(p);
    }
    if (free_sized) /* NULL must be accepted like free(NULL) */
        free_sized(malloc(100), 100), free_sized(NULL, 0);
    else
        printf("note: free_sized absent\n");
    if (free_aligned_sized)
        free_aligned_sized(aligned_alloc(256, 512), 256, 512), free_aligned_sized(NULL, 64, 0);
    else
        printf("note: free_aligned_sized absent\n");
}

/* Many interleaved live blocks of all size classes; a metadata bug that lets
 * two blocks overlap shows up as a foreign byte. */
#define NBLK 10000
static unsigned char *blk[NBLK];
static size_t blen[NBLK];

static void alloc_slot(size_t i)
{
    /* Log-uniform-ish up to 70000 so every size class is hit, not mostly the
     * largest ones as a flat 1..70000 draw would do. */
    size_t cap = (size_t)2 << (lcg() % 16);
    blen[i] = 1 + lcg() % (cap < 70000 ? cap : 70000);
    blk[i] = malloc(blen[i]);
    CHECK(blk[i], "malloc(%zu)", blen[i]);
    memset(blk[i], (int)(i * 13 + 1) & 0xFF, blen[i]);
}

static void test_interleaved(void)
{
    static size_t order[NBLK];
    for (size_t i = 0; i < NBLK; i++) {
        alloc_slot(i);
        order[i] = i;
    }
    for (size_t i = NBLK - 1; i > 0; i--) { /* Fisher-Yates: random free order */
        size_t j = lcg() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < NBLK / 2; i++) {
        free(blk[order[i]]);
        blk[order[i]] = NULL;
    }
    for (size_t i = 0; i < NBLK / 2; i++) alloc_slot(order[i]);
    for (size_t i = 0; i < NBLK; i++) {
        unsigned char want = (unsigned char)(i * 13 + 1);
        for (size_t k = 0; k < blen[i]; k++)
            CHECK(blk[i][k] == want, "block %zu byte %zu = %#x, want %#x", i, k, blk[i][k], want);
        free(blk[i]);
    }
}

int main(void)
{
    test_malloc_free();
    test_calloc();
    test_realloc();
    test_aligned();
    test_usable_and_sized();
    test_interleaved();
    printf("ok edges\n");
    return 0;
}
