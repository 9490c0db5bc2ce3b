/* Forks with a fork handler (fork_handler_lib.c) that allocates during the fork; the
 * child allocates too. Prints `ok fork_handler`. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    for (int round = 0; round < 5; round++) {
        pid_t child = fork();
        if (child == 0) {
            char *volatile block = malloc(100000);
            block[0] = 1;
            free(block);
            _exit(0);
        }
        int status = 0;
        if (waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0) {
            fprintf(stderr, "FAIL fork_handler.c: child %d ended badly\n", round);
            return 1;
        }
    }
    puts("ok fork_handler");
    return 0;
}
