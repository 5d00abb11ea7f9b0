/*
 * sbuf.c - bounded growable strings (see sbuf.h).
 *
 * Overflow reasoning: len <= max always holds, and max is at most
 * SIZE_MAX / 2 (sbuf_init clamps it), so "len + n + 1" below cannot wrap
 * once n <= max - len has been checked, and doubling cap cannot either.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "sbuf.h"

void
sbuf_init(struct sbuf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max > SIZE_MAX / 2 ? SIZE_MAX / 2 : max;
}

/* reserve - room for n more bytes and the NUL; -1 (failed set) if not */
static int
reserve(struct sbuf *b, size_t n)
{
	size_t need, cap;
	char *p;

	if (n > b->max - b->len) {
		b->failed = true;
		return -1;
	}
	need = b->len + n + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	if (cap > b->max + 1)
		cap = b->max + 1;
	p = realloc(b->s, cap);
	if (p == NULL) {
		b->failed = true;
		return -1;
	}
	b->s = p;
	b->cap = cap;
	return 0;
}

int
sbuf_add(struct sbuf *b, const void *p, size_t n)
{
	if (reserve(b, n) < 0)
		return -1;
	if (n > 0)
		memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
	return 0;
}

int
sbuf_adds(struct sbuf *b, const char *s)
{
	return sbuf_add(b, s, strlen(s));
}

int
sbuf_vaddf(struct sbuf *b, const char *fmt, va_list ap)
{
	va_list aq;
	int n;

	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0) {
		b->failed = true;
		return -1;
	}
	if (reserve(b, (size_t)n) < 0)
		return -1;
	/* reserve() made room for n bytes and the NUL: this cannot truncate. */
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int
sbuf_addf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = sbuf_vaddf(b, fmt, ap);
	va_end(ap);
	return rc;
}

const char *
sbuf_str(const struct sbuf *b)
{
	return b->s != NULL ? b->s : "";
}

void
sbuf_truncate(struct sbuf *b, size_t len)
{
	if (len < b->len) {
		b->len = len;
		b->s[len] = '\0';
	}
	b->failed = false;
}

void
sbuf_cleanse(struct sbuf *b)
{
	if (b->s != NULL)
		OPENSSL_cleanse(b->s, b->cap);
	sbuf_truncate(b, 0);
}

void
sbuf_free(struct sbuf *b)
{
	size_t max = b->max;

	free(b->s);
	memset(b, 0, sizeof(*b));
	b->max = max;
}
