#define _GNU_SOURCE
#include "gmk_support.h"
#include <sched.h>
#include <string.h>
#include <unistd.h>

static _Thread_local char last_error[1024];

void gmk_support_set_error(const char *message) {
    if (message == NULL) { last_error[0] = '\0'; return; }
    strncpy(last_error, message, sizeof last_error - 1);
    last_error[sizeof last_error - 1] = '\0';
}

const char *gmk_support_error(void) { return last_error; }

int gmk_support_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
