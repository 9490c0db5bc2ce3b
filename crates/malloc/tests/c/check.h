/* check.h - the C test programs' CHECK: on a failed condition, print
 * `FAIL <file>:<line>: <what>` to stderr and exit 1. (fork.c keeps its own: a
 * forked child must report with write(2), not stdio.) */
#ifndef HEAPKIT_CHECK_H
#define HEAPKIT_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((noreturn, format(printf, 3, 4)))
static void fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}
#define CHECK(cond, ...) \
    do { if (!(cond)) fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)

#endif
