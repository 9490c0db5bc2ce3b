/* fork.c - fork() while other threads are inside the allocator.
 *
 * Background threads hammer malloc/free/realloc so that, at the instant the
 * main thread forks, some allocator lock is very likely held.  Only the
 * forking thread survives in the child; if the allocator does not take its
 * locks around fork (pthread_atfork or equivalent) and reset them in the
 * child, the child's first malloc deadlocks on a lock whose owner is gone.
 * Each child arms alarm() so such a deadlock ends as a SIGALRM death that the
 * parent reports, instead of hanging the test. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NTHR 4
#define NFORK 20
#define CHILD_BLOCKS 10000
#define CHILD_TIMEOUT 20 /* seconds before a stuck child is declared deadlocked */

static int in_child;

/* No stdio on failure: in the child stdio's lock could belong to a thread
 * that no longer exists, so format into a buffer and write(2) directly. */
__attribute__((noreturn, format(printf, 3, 4)))
static void fail(const char *file, int line, const char *fmt, ...)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "FAIL %s:%d: %s", file, line, in_child ? "child: " : "");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    if (write(2, buf, (size_t)n) < 0) { /* nothing better to do */ }
    if (in_child) _exit(1); /* never run the parent's atexit/stdio flush */
    exit(1);
}
#define CHECK(cond, ...) \
    do { if (!(cond)) fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)

static atomic_int stop;

static uint32_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 16);
}

/* Small classes mostly, some large blocks so the mmap/large-object path (and
 * whatever lock guards it) is also busy when fork happens. */
static size_t mixed_size(uint64_t *s, uint32_t large_one_in)
{
    uint32_t r = rnd(s) % (large_one_in * 8);
    if (r == 0) return 200000 + rnd(s) % 300000;
    if (r < large_one_in) return 2048 + rnd(s) % 30000;
    return 1 + rnd(s) % 512;
}

static void *churn(void *arg)
{
    uint64_t s = 0x2545F4914F6CDD1Dull * ((uintptr_t)arg + 1);
    void *slot[64] = {0};
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        unsigned i = rnd(&s) % 64;
        if (slot[i] && rnd(&s) % 4 == 0) {
            void *q = realloc(slot[i], mixed_size(&s, 8));
            CHECK(q, "realloc");
            slot[i] = q;
        } else {
            free(slot[i]);
            size_t n = mixed_size(&s, 8);
            slot[i] = malloc(n);
            CHECK(slot[i], "malloc(%zu)", n);
            memset(slot[i], (int)i, n < 64 ? n : 64); /* touch it */
        }
    }
    for (int i = 0; i < 64; i++) free(slot[i]);
    return NULL;
}

/* One byte value per block (memset-fast, the child runs on a crowded CPU);
 * neighbouring live blocks differ, so overlapping blocks are still caught. */
static unsigned char tag(uint32_t key) { return (unsigned char)(key * 131 + 1); }
static void check_block(const unsigned char *p, size_t len, uint32_t key)
{
    for (size_t k = 0; k < len; k++)
        CHECK(p[k] == tag(key), "block %u (len %zu) byte %zu = %#x", key, len, k, p[k]);
}

/* The child must have a fully working allocator: allocate, verify, free. */
static void child_work(uint32_t round)
{
    uint64_t s = 0xDEADBEEFull + round;
    unsigned char *slot[128] = {0};
    size_t len[128] = {0};
    uint32_t key[128] = {0};

    size_t big = 10u << 20; /* a 10 MB block: the mmap path after fork */
    unsigned char *b = malloc(big);
    CHECK(b, "malloc(10 MB)");
    memset(b, tag(round), big);
    check_block(b, big, round);
    free(b);

    for (uint32_t n = 0; n < CHILD_BLOCKS; n++) {
        unsigned i = rnd(&s) % 128;
        if (slot[i]) { /* verify before replacing */
            check_block(slot[i], len[i], key[i]);
            free(slot[i]);
        }
        len[i] = mixed_size(&s, 32); /* fewer big ones: bytes are checked */
        key[i] = n;
        slot[i] = malloc(len[i]);
        CHECK(slot[i], "malloc(%zu)", len[i]);
        memset(slot[i], tag(n), len[i]);
    }
    for (int i = 0; i < 128; i++) {
        if (slot[i]) check_block(slot[i], len[i], key[i]);
        free(slot[i]);
    }
}

int main(void)
{
    /* Backstop: a parent stuck inside fork() itself dies by SIGALRM too. */
    alarm(NFORK * CHILD_TIMEOUT);
    pthread_t th[NTHR];
    for (uintptr_t t = 0; t < NTHR; t++)
        CHECK(pthread_create(&th[t], NULL, churn, (void *)t) == 0, "pthread_create");

    for (uint32_t round = 0; round < NFORK; round++) {
        /* Let the churners get deep into the allocator between forks. */
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0) {
            in_child = 1;
            alarm(CHILD_TIMEOUT); /* pending alarms are not inherited: arm here */
            child_work(round);
            _exit(0);
        }
        int st;
        CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
        CHECK(!(WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM),
              "child %u hung for %ds (allocator deadlock after fork?)", round, CHILD_TIMEOUT);
        CHECK(!WIFSIGNALED(st), "child %u killed by signal %d (%s)", round, WTERMSIG(st),
              strsignal(WTERMSIG(st)));
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %u exited with %d", round,
              WEXITSTATUS(st));
    }

    atomic_store(&stop, 1);
    for (int t = 0; t < NTHR; t++) CHECK(pthread_join(th[t], NULL) == 0, "pthread_join");
    printf("ok fork\n");
    return 0;
}
