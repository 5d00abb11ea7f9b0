/*
 * lib/addr/ - the names mail is addressed with: mail addresses and
 * patterns (addr.h) and CIDR lists (cidr.h).  Pure parsers, fuzzed.  May
 * include util/ only.
 *
 * addr.h - mail addresses: RFC 5321 envelope paths and RFC 5322
 * From/Sender/Reply-To headers, plus the domain and address patterns that
 * configuration uses.
 *
 * Pure and bounded: no allocation, no I/O, every buffer has a hard size, and
 * input is parsed completely or refused (trailing garbage is an error).
 * Suitable for fuzzing.  Errors: functions return 0 on success and -1 on a
 * parse error, filling a struct addr_err with a message and the byte offset.
 *
 * Canonical form: the local part is kept as it goes on the wire, a dot-atom
 * when possible and a quoted string otherwise ("john doe"@x); quoting that is
 * not needed is removed.  The domain keeps its spelling; compare with
 * addr_equal()/domain_match(), which fold ASCII case.  UTF-8 (RFC 6531/6532)
 * is accepted where those RFCs allow it, invalid UTF-8 never is.
 */
#ifndef M3_ADDR_H
#define M3_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_LOCAL_MAX   64  /* RFC 5321 4.5.3.1.1, octets as sent */
#define ADDR_DOMAIN_MAX  255 /* RFC 5321 4.5.3.1.2 */
#define ADDR_PATH_MAX    254 /* 256-octet path minus the angle brackets */
#define ADDR_TEXT_MAX    (ADDR_LOCAL_MAX + 1 + ADDR_DOMAIN_MAX)
#define ADDR_DISPLAY_MAX 512  /* display names longer than this are refused */
#define ADDR_HEADER_MAX  8192 /* address header values longer than this are refused */

struct addr {
	char local[ADDR_LOCAL_MAX + 1];
	char domain[ADDR_DOMAIN_MAX + 1];
};

/* A mailbox of an address header: display name (unquoted, raw bytes) + address. */
struct mailbox {
	char display[ADDR_DISPLAY_MAX + 1];
	struct addr addr;
};

enum addr_code {
	ADDR_OK,
	ADDR_EMALFORMED, /* not an address (list) by RFC 5321/5322 */
	ADDR_ETOOMANY,   /* the list holds more addresses than the caller's cap */
};

struct addr_err {
	enum addr_code code;
	char msg[160]; /* what is wrong, for humans */
	size_t off;    /* byte offset of the problem in the input */
};

/* addr_parse_path - parse an envelope address, "<local@domain>" or bare; "<>" only if allow_null */
int addr_parse_path(const char *s, size_t len, bool allow_null, struct addr *out,
                    struct addr_err *err);
/* addr_parse_list - parse an address header value into at most cap mailboxes (groups flattened) */
int addr_parse_list(const char *s, size_t len, struct mailbox *out, size_t cap, size_t *n,
                    struct addr_err *err);
/* addr_parse_domain - validate a domain name (or [address literal]) */
int addr_parse_domain(const char *s, size_t len, struct addr_err *err);

/* addr_is_null - the null reverse-path <> */
bool addr_is_null(const struct addr *a);
/* addr_equal - same address, ASCII case folded in both parts */
bool addr_equal(const struct addr *a, const struct addr *b);
/* addr_format - "local@domain" ("" for null) into buf; -1 if it does not fit */
int addr_format(const struct addr *a, char *buf, size_t size);
/* addr_format_mailbox - '"Display" <local@domain>' with the display name made safe; -1 if too long
 */
int addr_format_mailbox(const char *display, const struct addr *a, char *buf, size_t size);

/*
 * Patterns.  A domain pattern is "example.com" (that domain only) or
 * "*.example.com" (any subdomain, not example.com itself): subdomains are
 * never matched implicitly.  An address pattern is "*" (any address),
 * "@domain-pattern" (any local part) or "local@domain-pattern".
 */
/* domain_match - does domain match the domain pattern */
bool domain_match(const char *pattern, const char *domain);
/* addr_match - does the address match the address pattern */
bool addr_match(const char *pattern, const struct addr *a);
/* domain_pattern_check - validate a domain pattern */
int domain_pattern_check(const char *pattern, struct addr_err *err);
/* addr_pattern_check - validate an address pattern */
int addr_pattern_check(const char *pattern, struct addr_err *err);

#endif
