#ifndef GMK_SUPPORT_H
#define GMK_SUPPORT_H

#include <stdint.h>

/* Atomic access to the caller's cancel flag and progress counter, which Swift
 * cannot express on a raw pointer without a package dependency. */
static inline int32_t gmk_atomic_load_i32(const volatile int32_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void gmk_atomic_add_i64(volatile int64_t *p, int64_t v) {
    __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static inline int64_t gmk_atomic_fetch_add_i64(volatile int64_t *p, int64_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

/* The number of CPUs this process may run on (its affinity mask), at least 1. */
int gmk_support_cpu_count(void);

/* Bytes of physical memory (0 when unknown). */
int64_t gmk_support_physical_memory(void);

/* 1 when `p` lies in anonymous memory (heap or an anonymous mapping, as numpy's arrays),
 * 0 when in a file mapping (a memmap, shared memory) or when /proc/self/maps is unreadable. */
int gmk_support_is_anonymous(const void *p);

/* Reads and writes back one byte in every page of `lines` runs of `line_bytes` bytes,
 * `stride_bytes` apart: faults the pages in (writable) without changing their contents. */
void gmk_support_touch_pages(void *base, int64_t lines, int64_t line_bytes, int64_t stride_bytes);

/* The per-thread message that gmk_last_error() returns. */
void gmk_support_set_error(const char *message);
const char *gmk_support_error(void);

#endif
