/*
 * util.c - bounded strings, ASCII case, UTF-8, arena.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "util.h"

size_t
m3_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

size_t
m3_strlcat(char *dst, const char *src, size_t size)
{
	size_t dlen = strnlen(dst, size);

	if (dlen == size)
		return size + strlen(src);
	return dlen + m3_strlcpy(dst + dlen, src, size - dlen);
}

static inline int
lc(int c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

int
m3_casecmp(const char *a, const char *b)
{
	const unsigned char *p = (const unsigned char *)a;
	const unsigned char *q = (const unsigned char *)b;

	while (*p && lc(*p) == lc(*q))
		p++, q++;
	return lc(*p) - lc(*q);
}

int
m3_ncasecmp(const char *a, const char *b, size_t n)
{
	const unsigned char *p = (const unsigned char *)a;
	const unsigned char *q = (const unsigned char *)b;

	for (; n > 0; n--, p++, q++) {
		if (lc(*p) != lc(*q))
			return lc(*p) - lc(*q);
		if (*p == '\0')
			break;
	}
	return 0;
}

void
m3_lower(char *s)
{
	for (; *s; s++)
		*s = (char)lc((unsigned char)*s);
}

void
m3_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

long
m3_clock_offset(void)
{
	const char *v = getenv("M365RELAY_TEST_CLOCK");
	char *end;
	long n;

	if (v == NULL || *v == '\0')
		return 0;
	n = strtol(v, &end, 10);
	return *end == '\0' && n > -86400L * 3650 && n < 86400L * 3650 ? n : 0;
}

uint64_t
m3_time(void)
{
	return (uint64_t)((long long)time(NULL) + m3_clock_offset());
}

const char *
m3_utc_hms(uint64_t ms, char *buf, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%H:%M:%SZ", &tm);
	return buf;
}

const char *
m3_printable(char *dst, const char *src, size_t size)
{
	size_t i;

	if (size == 0)
		return dst;
	for (i = 0; src[i] != '\0' && i + 1 < size; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	dst[i] = '\0';
	return dst;
}

size_t
m3_utf8_seq(const unsigned char *s, size_t len)
{
	uint32_t cp;
	size_t n, i;

	if (len == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0; /* continuation byte, 0xc0/0xc1 overlong, > U+10FFFF */
	}
	if (len < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* Arena ---------------------------------------------------------------- */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

void
prefault(void *p, size_t n)
{
	uintptr_t page = 4096, from = ((uintptr_t)p + page - 1) & ~(page - 1),
	          to = ((uintptr_t)p + n) & ~(page - 1);

	if (to > from)
		(void)madvise((void *)from, to - from, MADV_POPULATE_WRITE); /* a hint */
}

/* Chunks start small and double up to a limit: a small arena stays small,
 * a configuration of 10,000 mailboxes takes a few dozen mallocs. */
#define ARENA_CHUNK     8192
#define ARENA_CHUNK_MAX (1024 * 1024)

struct chunk {
	struct chunk *next;
	size_t used, size;
	max_align_t data[];
};

struct arena {
	struct chunk *head;
	/* a region arena: one mapping at a fixed address, the arena itself at
	 * its start, allocations after it in order (arena_new_region) */
	char *region;
	size_t region_size, region_used;
	size_t next_chunk; /* the size of the next chunk (0: ARENA_CHUNK) */
};

struct arena *
arena_new(void)
{
	return calloc(1, sizeof(struct arena));
}

struct arena *
arena_new_region(void *base, size_t reserve)
{
	struct arena *a;
	void *p = mmap(base, reserve, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	if (p != base) { /* a kernel without MAP_FIXED_NOREPLACE took it as a hint */
		munmap(p, reserve);
		return NULL;
	}
	a = p;
	a->region = p;
	a->region_size = reserve;
	a->region_used =
	    (sizeof(*a) + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	return a;
}

void
arena_region(const struct arena *a, const void **base, size_t *used)
{
	*base = a->region;
	*used = a->region != NULL ? a->region_used : 0;
}

struct arena *
arena_adopt_region(void *base, size_t mapped)
{
	struct arena *a = base;

	if (a->region != base || a->region_used > mapped || a->head != NULL)
		return NULL;
	a->region_size = mapped; /* full: nothing more is allocated in it */
	a->region_used = mapped;
	return a;
}

void
arena_free(struct arena *a)
{
	struct chunk *c, *next;

	if (a == NULL)
		return;
	if (a->region != NULL) {
		munmap(a->region, a->region_size);
		return;
	}
	for (c = a->head; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(a);
}

void
arena_reset(struct arena *a)
{
	struct chunk *c, *next;

	if (a == NULL || a->region != NULL || a->head == NULL)
		return;
	for (c = a->head->next; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	a->head->next = NULL;
	memset(a->head->data, 0, a->head->used); /* chunks are handed out zeroed */
	a->head->used = 0;
}

void *
arena_alloc(struct arena *a, size_t size)
{
	const size_t align = sizeof(max_align_t);
	struct chunk *c = a->head;
	void *p;

	/* Round up; the check keeps the rounding from wrapping. */
	if (size > SIZE_MAX / 2)
		return NULL;
	size = (size + align - 1) / align * align;
	if (a->region != NULL) {
		if (a->region_size - a->region_used < size)
			return NULL;
		p = a->region + a->region_used;
		a->region_used += size;
		return p; /* fresh anonymous memory is zero */
	}
	if (c == NULL || c->size - c->used < size) {
		size_t csize = a->next_chunk ? a->next_chunk : ARENA_CHUNK;
		if (csize < size)
			csize = size;
		/* Zeroed once, here: no byte of a chunk is handed out twice
		 * (and calloc knows fresh memory needs no clearing). */
		c = calloc(1, sizeof(*c) + csize);
		if (c == NULL)
			return NULL;
		if (csize >= 256 * 1024) /* a large arena will use it all */
			prefault(c, sizeof(*c) + csize);
		c->used = 0;
		c->size = csize;
		c->next = a->head;
		a->head = c;
		a->next_chunk = csize < ARENA_CHUNK_MAX / 2 ? csize * 2 : ARENA_CHUNK_MAX;
	}
	p = (char *)c->data + c->used;
	c->used += size;
	return p;
}

char *
arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);

	if (p != NULL) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

char *
arena_strdup(struct arena *a, const char *s)
{
	return s == NULL ? NULL : arena_strndup(a, s, strlen(s));
}

void
m3_sleep_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The string index --------------------------------------------------------------- */

struct strindex_slot {
	const char *key; /* NULL: empty */
	size_t len, val;
};

struct strindex {
	struct arena *arena;
	struct strindex_slot *slots;
	size_t mask, n, max;
	bool nocase;
};

struct strindex *
strindex_new(struct arena *a, size_t max_keys, bool nocase)
{
	struct strindex *x = arena_alloc(a, sizeof(*x));
	size_t cap = 8;

	if (x == NULL || max_keys > SIZE_MAX / 4 / sizeof(*x->slots))
		return NULL;
	while (cap < max_keys * 2) /* at most half full */
		cap *= 2;
	x->slots = arena_alloc(a, cap * sizeof(*x->slots));
	if (x->slots == NULL)
		return NULL;
	x->arena = a;
	x->mask = cap - 1;
	x->max = max_keys;
	x->nocase = nocase;
	return x;
}

/* FNV-1a, over the folded bytes when the index ignores case */
static size_t
strindex_hash(const struct strindex *x, const char *key, size_t len)
{
	uint64_t h = 14695981039346656037ULL;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)(x->nocase ? lc((unsigned char)key[i]) : key[i]);
		h *= 1099511628211ULL;
	}
	return (size_t)(h ^ (h >> 32));
}

static bool
strindex_same(const struct strindex *x, const struct strindex_slot *s, const char *key, size_t len)
{
	size_t i;

	if (s->len != len)
		return false;
	if (!x->nocase)
		return memcmp(s->key, key, len) == 0;
	for (i = 0; i < len; i++)
		if (lc((unsigned char)s->key[i]) != lc((unsigned char)key[i]))
			return false;
	return true;
}

/* the slot holding key, or the empty one where it would go */
static struct strindex_slot *
strindex_slot(const struct strindex *x, const char *key, size_t len)
{
	size_t i = strindex_hash(x, key, len) & x->mask;

	while (x->slots[i].key != NULL && !strindex_same(x, &x->slots[i], key, len))
		i = (i + 1) & x->mask;
	return &x->slots[i];
}

int
strindex_put(struct strindex *x, const char *key, size_t len, size_t val, size_t *first)
{
	struct strindex_slot *s = strindex_slot(x, key, len);

	if (s->key != NULL) {
		if (first != NULL)
			*first = s->val;
		return 1;
	}
	if (x->n == x->max)
		return -1;
	s->key = arena_strndup(x->arena, key, len);
	if (s->key == NULL)
		return -1;
	s->len = len;
	s->val = val;
	x->n++;
	return 0;
}

bool
strindex_get(const struct strindex *x, const char *key, size_t len, size_t *val)
{
	const struct strindex_slot *s;

	if (x == NULL)
		return false;
	s = strindex_slot(x, key, len);
	if (s->key == NULL)
		return false;
	*val = s->val;
	return true;
}
