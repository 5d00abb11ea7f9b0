/*
 * sbuf.h - a bounded growable string (after Postfix's VSTRING): it carries
 * its length, stays NUL-terminated, and never grows past the limit given
 * when it was made.  Every piece assembled into an SMTP command, a report
 * or an HTTP answer goes through here, so that no code adds up snprintf()
 * return values by hand.
 *
 * An append either fits whole or changes nothing and fails; the failure is
 * also remembered (b->failed), so a caller may append several pieces and
 * check once at the end.  Nothing exits; out of memory is a failure too.
 */
#ifndef M3_SBUF_H
#define M3_SBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct sbuf {
	char *s;     /* NULL until the first append; see sbuf_str() */
	size_t len;  /* bytes in s, without the NUL */
	size_t cap;  /* bytes allocated */
	size_t max;  /* the longest len may become */
	bool failed; /* an append did not fit, or memory ran out (sticky) */
};

/* sbuf_init - an empty string that may grow to max bytes */
void sbuf_init(struct sbuf *b, size_t max);
/* sbuf_add - append n bytes of p (NULs included); -1 if they do not fit */
int sbuf_add(struct sbuf *b, const void *p, size_t n);
/* sbuf_adds - append a C string; -1 if it does not fit */
int sbuf_adds(struct sbuf *b, const char *s);
/* sbuf_addf - append printf-style; -1 if the result does not fit */
int sbuf_addf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* sbuf_vaddf - sbuf_addf with a va_list */
int sbuf_vaddf(struct sbuf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* sbuf_str - the contents, "" when empty (never NULL) */
const char *sbuf_str(const struct sbuf *b);
/* sbuf_truncate - keep the first len bytes (no-op if already shorter); clears failed */
void sbuf_truncate(struct sbuf *b, size_t len);
/* sbuf_cleanse - zero the storage (secrets), then empty the string */
void sbuf_cleanse(struct sbuf *b);
/* sbuf_free - release the storage; the string is empty again */
void sbuf_free(struct sbuf *b);

#endif
