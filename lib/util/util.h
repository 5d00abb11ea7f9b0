/*
 * lib/util/ - the floor: strings, the arena, the bounded buffer (sbuf.h),
 * logging (log.h).  Includes only libc; every other folder may include it.
 *
 * util.h - small pure helpers shared by every module: bounded copies,
 * ASCII case folding, UTF-8 validation, and an arena that owns a whole
 * configuration snapshot so that a reload frees it in one call.
 *
 * Nothing here does I/O or exits; allocation failure is reported (NULL).
 */
#ifndef M3_UTIL_H
#define M3_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/*
 * The error contract: a module that can fail in more than one way has a
 * struct X_err { enum X_code code; char msg[N]; ... }; callers decide on
 * code, people read msg.  M3_FAIL fills both and is -1, so that
 * "return M3_FAIL(e, DNS_ETEMP, "...", ...);" is the one way to fail.
 */
#define M3_FAIL(e, c, ...)                                                                         \
	__extension__({                                                                            \
		(e)->code = (c);                                                                   \
		snprintf((e)->msg, sizeof((e)->msg), __VA_ARGS__);                                 \
		-1;                                                                                \
	})

/* m3_sleep_ms - sleep ms milliseconds, signals or not */
void m3_sleep_ms(uint64_t ms);
/* m3_strlcpy - copy with truncation; returns strlen(src) (truncated if >= size) */
size_t m3_strlcpy(char *dst, const char *src, size_t size);
/* m3_strlcat - append with truncation; returns the length it tried to make */
size_t m3_strlcat(char *dst, const char *src, size_t size);
/* m3_casecmp - ASCII-only case-insensitive compare (locale independent) */
int m3_casecmp(const char *a, const char *b);
/* m3_ncasecmp - same, over at most n bytes */
int m3_ncasecmp(const char *a, const char *b, size_t n);
/* m3_lower - fold ASCII letters of s to lower case in place */
void m3_lower(char *s);
/* m3_hex - n bytes as 2n lower-case hex digits and a NUL (out holds 2n + 1) */
void m3_hex(const unsigned char *in, size_t n, char *out);
/* m3_clock_offset - seconds the clock is moved by for tests: the
 * environment's M365RELAY_TEST_CLOCK (a signed integer; 0 when unset or not
 * one).  Read by m3_time() and the store's clock, so that a test makes a
 * token or a window expire without waiting for it. */
long m3_clock_offset(void);
/* m3_time - the wall clock in seconds, moved by m3_clock_offset() */
uint64_t m3_time(void);
/* m3_utc_hms - ms since the epoch as "HH:MM:SSZ" (UTC), for "retry after" texts */
const char *m3_utc_hms(uint64_t ms, char *buf, size_t size);
/* m3_printable - src for a log line: control characters as '?', at most size-1 bytes */
const char *m3_printable(char *dst, const char *src, size_t size);
/* m3_utf8_seq - length of the valid UTF-8 sequence at s (max len bytes), 0 if invalid */
size_t m3_utf8_seq(const unsigned char *s, size_t len);

/*
 * An arena: many small allocations freed together.  Used for configuration
 * snapshots, which live from load to the reload that replaces them.
 */
struct arena;
/* prefault - fault in the whole pages of [p, p + n) in one call, which
 * costs half of touching them one by one where a page fault is dear (a
 * virtual machine: about 11 us a page here); only a hint, never fails */
void prefault(void *p, size_t n);
/* arena_new - a new, empty arena (NULL on allocation failure) */
struct arena *arena_new(void);
/* arena_new_region - an arena in one mapping at base (reserve bytes, not
 * committed until used), the arena itself at its start, so that the
 * bytes in use can be written to a file and mapped back at base by
 * another process (conf_snap.c); NULL if base is taken */
struct arena *arena_new_region(void *base, size_t reserve);
/* arena_region - a region arena's base and the bytes in use (0 for a
 * malloc arena) */
void arena_region(const struct arena *a, const void **base, size_t *used);
/* arena_adopt_region - the arena of a region mapped back at base
 * (mapped bytes); it takes no more allocations; NULL if it is not one */
struct arena *arena_adopt_region(void *base, size_t mapped);
/* arena_free - free the arena and everything allocated from it */
void arena_free(struct arena *a);
/* arena_reset - everything allocated from a (not a region) is gone; its
 * newest chunk is kept for what comes next */
void arena_reset(struct arena *a);
/* arena_alloc - zeroed memory from the arena, aligned for any type */
void *arena_alloc(struct arena *a, size_t size);
/* arena_strdup - copy of s in the arena (NULL stays NULL) */
char *arena_strdup(struct arena *a, const char *s);
/* arena_strndup - copy of n bytes of s, NUL-terminated */
char *arena_strndup(struct arena *a, const char *s, size_t n);

/*
 * A string index: byte strings (ASCII case folded if asked) to small
 * integers, hashed with open addressing, built once into an arena and read
 * many times.  It keeps its own copy of each key.  What the configuration
 * uses so that no look-up, and no duplicate check, scans a whole list.
 */
struct strindex;
/* strindex_new - an index for at most max_keys keys (NULL on allocation failure) */
struct strindex *strindex_new(struct arena *a, size_t max_keys, bool nocase);
/* strindex_put - key (len bytes) -> val: 0 added, 1 the key was there (its
 * first value is kept and put in *first if not NULL), -1 full or no memory */
int strindex_put(struct strindex *x, const char *key, size_t len, size_t val, size_t *first);
/* strindex_get - key's value into *val; false if absent (x may be NULL) */
bool strindex_get(const struct strindex *x, const char *key, size_t len, size_t *val);

#endif
