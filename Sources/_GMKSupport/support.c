#define _GNU_SOURCE
#include "gmk_support.h"
#include <sched.h>
#include <stdio.h>
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

int64_t gmk_support_physical_memory(void) {
    long pages = sysconf(_SC_PHYS_PAGES);
    long size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (int64_t)pages * size : 0;
}

void gmk_support_touch_pages(void *base, int64_t lines, int64_t line_bytes, int64_t stride_bytes) {
    if (line_bytes <= 0) return;
    for (int64_t i = 0; i < lines; i++) {
        volatile unsigned char *line = (volatile unsigned char *)base + i * stride_bytes;
        for (int64_t b = 0; b < line_bytes; b += 4096) line[b] = line[b];
        line[line_bytes - 1] = line[line_bytes - 1];
    }
}

int gmk_support_is_anonymous(const void *p) {
    FILE *maps = fopen("/proc/self/maps", "re");
    if (maps == NULL) return 0;
    unsigned long address = (unsigned long)p;
    char line[512];
    int whole = 1; /* whether `line` starts a line (long paths come in several pieces) */
    int anonymous = 0;
    while (fgets(line, sizeof line, maps) != NULL) {
        int starts = whole;
        whole = strchr(line, '\n') != NULL;
        if (!starts) continue;
        unsigned long start, end, inode;
        int path = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %lu %n", &start, &end, &inode, &path) < 3) continue;
        if (address < start || address >= end) continue;
        anonymous = inode == 0 && (line[path] == '\0' || strncmp(line + path, "[heap]", 6) == 0);
        break;
    }
    fclose(maps);
    return anonymous;
}
