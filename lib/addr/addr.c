/*
 * addr.c - envelope paths, canonical forms, formatting, patterns; the
 * header grammar is in addr_header.c, the shared pieces in addr_lex.c.
 *
 * Two grammars share one cursor:
 *  - RFC 5321 Path (Mailbox = Local-part "@" ( Domain / address-literal )),
 *    strict, with RFC 6531 UTF-8;
 *  - RFC 5322 address-list (name-addr, addr-spec, groups, comments, quoted
 *    strings, the obs- forms that real mailers still send), with RFC 6532
 *    UTF-8 and RFC 2047 encoded words kept as opaque words.
 *
 * The classic trap is an "@" inside a display name:
 *	From: "ceo@contoso.com" <attacker@example.net>
 * The address is the one in angle brackets; the display name is text.  The
 * parser only ever takes the address from addr-spec or angle-addr syntax.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "addr_lex.h"
#include "util/util.h"

/* Envelope (RFC 5321) ------------------------------------------------------ */

int
addr_parse_path(const char *s, size_t len, bool allow_null, struct addr *out, struct addr_err *err)
{
	struct cur c = {(const unsigned char *)s, (const unsigned char *)s,
	                (const unsigned char *)s + len, err, ""};
	char value[ADDR_LOCAL_MAX + 1];
	struct val v = {value, 0, ADDR_LOCAL_MAX, "local part longer than 64 octets"};
	bool angle = false;

	memset(out, 0, sizeof(*out));
	value[0] = '\0';
	if (len > ADDR_PATH_MAX + 2)
		return ax_fail(&c, "address longer than 254 octets");
	if (ax_peek(&c) == '<') {
		angle = true;
		c.p++;
		if (c.end == c.p || c.end[-1] != '>')
			return ax_fail(&c, "missing closing '>'");
		c.end--;
	}
	if (c.p == c.end) {
		if (!allow_null)
			return ax_fail(&c, "empty address");
		if (!angle && len != 0)
			return ax_fail(&c, "empty address");
		return 0; /* the null reverse-path */
	}
	/* A source route (RFC 5321 4.1.2, obsolete) is accepted and ignored. */
	if (angle && ax_peek(&c) == '@') {
		const unsigned char *colon = memchr(c.p, ':', (size_t)(c.end - c.p));
		if (colon == NULL)
			return ax_fail(&c, "source route without ':'");
		c.p = colon + 1;
	}
	if (ax_peek(&c) == '"') {
		if (ax_read_qstring(&c, &v, true) < 0)
			return -1;
	} else {
		for (;;) {
			if (ax_read_atom(&c, &v) < 0)
				return -1;
			if (ax_peek(&c) != '.')
				break;
			c.p++;
			if (ax_val_add(&c, &v, ".", 1) < 0)
				return -1;
		}
	}
	if (ax_peek(&c) < 0)
		return ax_fail(&c, "missing '@domain'");
	if (ax_peek(&c) != '@')
		return ax_fail_char(&c, "local part");
	if (ax_canon_local(&c, v.buf, v.len, out->local) < 0)
		return -1;
	c.p++;
	if (ax_parse_domain_at(&c, out->domain) < 0)
		return -1;
	if (c.p != c.end)
		return ax_fail_char(&c, "after address");
	if (strlen(out->local) + 1 + strlen(out->domain) > ADDR_PATH_MAX)
		return ax_fail(&c, "address longer than 254 octets");
	return 0;
}

/* Formatting and comparison ------------------------------------------------ */

bool
addr_is_null(const struct addr *a)
{
	return a->local[0] == '\0' && a->domain[0] == '\0';
}

bool
addr_equal(const struct addr *a, const struct addr *b)
{
	return m3_casecmp(a->local, b->local) == 0 && m3_casecmp(a->domain, b->domain) == 0;
}

int
addr_format(const struct addr *a, char *buf, size_t size)
{
	int n;

	if (addr_is_null(a)) {
		if (size == 0)
			return -1;
		buf[0] = '\0';
		return 0;
	}
	n = snprintf(buf, size, "%s@%s", a->local, a->domain);
	return n < 0 || (size_t)n >= size ? -1 : n;
}

/* phrase_safe - whether a display name can be written as bare atoms */
static bool
phrase_safe(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (*p == ' ' || *p == '\0')
		return false;
	for (; *p; p++)
		if (!(*p == ' ' || *p >= 0x80 || ax_is_atext(*p)))
			return false;
	return p[-1] != ' ';
}

int
addr_format_mailbox(const char *display, const struct addr *a, char *buf, size_t size)
{
	char ab[ADDR_TEXT_MAX + 1];
	size_t o = 0;
	const unsigned char *p;
	int n;

	if (addr_format(a, ab, sizeof(ab)) < 0)
		return -1;
	if (display == NULL || display[0] == '\0') {
		n = snprintf(buf, size, "%s", ab);
		return n < 0 || (size_t)n >= size ? -1 : n;
	}
	if (phrase_safe(display)) {
		n = snprintf(buf, size, "%s <%s>", display, ab);
		return n < 0 || (size_t)n >= size ? -1 : n;
	}
	/* Quote it: escape '"' and '\', turn control characters into spaces. */
	if (size < 2)
		return -1;
	buf[o++] = '"';
	for (p = (const unsigned char *)display; *p; p++) {
		if (o + 3 >= size)
			return -1;
		if (*p == '"' || *p == '\\')
			buf[o++] = '\\';
		buf[o++] = (char)(*p < 0x20 || *p == 0x7f ? ' ' : *p);
	}
	n = snprintf(buf + o, size - o, "\" <%s>", ab);
	return n < 0 || (size_t)n >= size - o ? -1 : (int)o + n;
}

/* Patterns ------------------------------------------------------------------ */

bool
domain_match(const char *pattern, const char *domain)
{
	size_t pl, dl;

	if (pattern[0] == '*' && pattern[1] == '.') {
		pl = strlen(pattern + 1); /* ".example.com" */
		dl = strlen(domain);
		return dl > pl && m3_casecmp(domain + dl - pl, pattern + 1) == 0;
	}
	return m3_casecmp(pattern, domain) == 0;
}

bool
addr_match(const char *pattern, const struct addr *a)
{
	const char *at;

	if (strcmp(pattern, "*") == 0)
		return !addr_is_null(a);
	at = strrchr(pattern, '@');
	if (at == NULL)
		return false;
	if (at != pattern && (strlen(a->local) != (size_t)(at - pattern) ||
	                      m3_ncasecmp(pattern, a->local, (size_t)(at - pattern)) != 0))
		return false;
	return domain_match(at + 1, a->domain);
}

int
domain_pattern_check(const char *pattern, struct addr_err *err)
{
	const char *d = pattern;

	if (d[0] == '*') {
		if (d[1] != '.') {
			err->code = ADDR_EMALFORMED;
			err->off = 1;
			m3_strlcpy(err->msg, "a wildcard must be written *.domain",
			           sizeof(err->msg));
			return -1;
		}
		d += 2;
	}
	if (d[0] == '[') {
		err->code = ADDR_EMALFORMED;
		err->off = 0;
		m3_strlcpy(err->msg, "an address literal is not a domain", sizeof(err->msg));
		return -1;
	}
	if (addr_parse_domain(d, strlen(d), err) < 0) {
		err->off += (size_t)(d - pattern);
		return -1;
	}
	return 0;
}

int
addr_pattern_check(const char *pattern, struct addr_err *err)
{
	const char *at;
	struct addr a;

	if (strcmp(pattern, "*") == 0)
		return 0;
	at = strrchr(pattern, '@');
	if (at == NULL) {
		err->code = ADDR_EMALFORMED;
		err->off = 0;
		m3_strlcpy(err->msg, "expected local@domain, @domain or *", sizeof(err->msg));
		return -1;
	}
	if (at != pattern) {
		/* Check the local part by parsing a sample address. */
		char tmp[ADDR_TEXT_MAX + 16];
		snprintf(tmp, sizeof(tmp), "%.*s@example.com", (int)(at - pattern), pattern);
		if (addr_parse_path(tmp, strlen(tmp), false, &a, err) < 0)
			return -1;
		if (strlen(a.local) != (size_t)(at - pattern) ||
		    strncmp(a.local, pattern, (size_t)(at - pattern)) != 0) {
			err->code = ADDR_EMALFORMED;
			err->off = 0;
			m3_strlcpy(err->msg, "local part is not in canonical form",
			           sizeof(err->msg));
			return -1;
		}
	}
	if (domain_pattern_check(at + 1, err) < 0) {
		err->off += (size_t)(at + 1 - pattern);
		return -1;
	}
	return 0;
}
