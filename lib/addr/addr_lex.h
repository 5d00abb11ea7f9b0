/*
 * addr_lex.h - the cursor and the pieces both address grammars share
 * (domains, local parts, quoted strings, atoms), private to lib/addr/:
 * addr.c (RFC 5321 paths) and addr_header.c (RFC 5322 lists) parse with
 * them; addr_lex.c holds them.  Every function returns 0 or a length, or
 * -1 with the cursor's error set (ax_fail).
 */
#ifndef M3_ADDR_LEX_H
#define M3_ADDR_LEX_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"

#define COMMENT_DEPTH_MAX 16

struct cur {
	const unsigned char *base, *p, *end;
	struct addr_err *err;
	char comment[ADDR_DISPLAY_MAX + 1]; /* last comment seen, for "addr (Name)" */
};

/* Append bytes to a bounded value buffer. */
struct val {
	char *buf;
	size_t len, cap; /* cap excludes the NUL */
	const char *toolong;
};

static inline int
ax_peek(const struct cur *c)
{
	return c->p < c->end ? *c->p : -1;
}

/* ax_fail - -1, with msg and the cursor's offset in its error */
int ax_fail(struct cur *c, const char *msg);
/* ax_fail_char - -1, naming what was expected and the byte found instead */
int ax_fail_char(struct cur *c, const char *what);
/* ax_utf8_step - over one valid UTF-8 sequence: its length; 0 at ASCII; -1 if invalid */
int ax_utf8_step(struct cur *c);
/* ax_is_atext - RFC 5322 atext (ASCII) */
bool ax_is_atext(int ch);
/* ax_val_add - append to a bounded value; -1 (v->toolong) when it would not fit */
int ax_val_add(struct cur *c, struct val *v, const void *p, size_t n);
/* ax_parse_literal - an address literal "[...]" (IPv4, IPv6:...) into out */
int ax_parse_literal(struct cur *c, char *out);
/* ax_parse_domain_at - a domain or address literal after "@", lower-cased into out */
int ax_parse_domain_at(struct cur *c, char *out);
/* ax_is_dot_atom - whether s can go unquoted */
bool ax_is_dot_atom(const char *s, size_t len);
/* ax_canon_local - the local part's canonical form (dot-atom, else quoted) */
int ax_canon_local(struct cur *c, const char *v, size_t len, char *out);
/* ax_read_qstring - a quoted string's content (smtp: RFC 5321's stricter form) */
int ax_read_qstring(struct cur *c, struct val *v, bool smtp);
/* ax_read_atom - an atom's bytes (atext and UTF-8) */
int ax_read_atom(struct cur *c, struct val *v);

#endif
