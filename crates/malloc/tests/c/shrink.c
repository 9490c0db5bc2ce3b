/* shrink.c - a realloc that shrinks never fails, even with no memory left: a block that
 * would move to a smaller one (it wastes half or more of itself) stays where it is when
 * that smaller block cannot be had, as glibc's does. And the smallest blocks, with no
 * smaller class to go to, stay put without trying. */
#include <errno.h>
#include <malloc.h>
#include <string.h>
#include <sys/resource.h>

#include "check.h"

int main(void)
{
    /* 8 bytes has no smaller class: shrinking keeps the block. */
    char *tiny = malloc(8);
    CHECK(tiny && realloc(tiny, 2) == tiny, "an 8-byte block moved on shrinking to 2");
    free(tiny);

    size_t big = (size_t)64 << 20;
    char *huge = malloc(big);
    char *small = malloc(160);
    CHECK(huge && small, "setting up");
    memset(huge, 7, big);
    memset(small, 9, 160);
    size_t huge_usable = malloc_usable_size(huge);
    size_t small_usable = malloc_usable_size(small);

    /* 1 GiB of address space in all, then use up what is left of it. */
    struct rlimit limit = { (rlim_t)1 << 30, (rlim_t)1 << 30 };
    CHECK(setrlimit(RLIMIT_AS, &limit) == 0, "setrlimit");
    for (size_t size = (size_t)256 << 20; size >= 16; size /= 2)
        while (malloc(size)) {}

    errno = 0;
    size_t to = huge_usable * 2 / 5; /* less than half: it would move if it could */
    char *shrunk = realloc(huge, to);
    CHECK(shrunk != NULL, "shrinking a %zu-byte block to %zu failed (errno %d)",
          huge_usable, to, errno);
    CHECK(errno == 0, "a shrink that succeeded set errno to %d", errno);
    CHECK(shrunk[0] == 7 && shrunk[to - 1] == 7, "a shrunk block lost its contents");

    shrunk = realloc(small, 51);
    CHECK(shrunk != NULL, "shrinking a %zu-byte block to 51 failed (errno %d)",
          small_usable, errno);
    CHECK(errno == 0, "a shrink that succeeded set errno to %d", errno);
    CHECK(shrunk[0] == 9 && shrunk[50] == 9, "a shrunk block lost its contents");

    printf("ok shrink\n");
    return 0;
}
