/*
 * cidr.h - IPv4/IPv6 addresses and CIDR blocks for matching submitters.
 *
 * Pure.  IPv4-mapped IPv6 addresses (::ffff:192.0.2.1, as a dual-stack
 * Postfix may report them) are matched as IPv4.  A block with host bits set
 * ("10.0.0.5/24") is refused: it is almost always a typo, and silently
 * masking it would authorize a network nobody meant to.
 */
#ifndef M3_CIDR_H
#define M3_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ipaddr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t b[16];
};

struct cidr {
	struct ipaddr net;
	unsigned prefix;
};

/* ip_parse - parse a textual address, optionally in [brackets]; -1 if invalid */
int ip_parse(const char *s, struct ipaddr *ip);
/* ip_from_sockaddr - from a struct sockaddr (AF_INET/AF_INET6); -1 otherwise */
int ip_from_sockaddr(const void *sa, struct ipaddr *ip);
/* ip_format - text form into buf (at least 46 bytes) */
const char *ip_format(const struct ipaddr *ip, char *buf, unsigned size);
/* cidr_parse - "a.b.c.d[/n]" or "x::y[/n]"; err names the problem */
int cidr_parse(const char *s, struct cidr *c, const char **err);
/* cidr_match - whether ip lies in the block */
bool cidr_match(const struct cidr *c, const struct ipaddr *ip);
/* cidr_equal - same block */
bool cidr_equal(const struct cidr *a, const struct cidr *b);
/* cidr_key - a block as bytes for a hash index (family, prefix, network);
 * ip masked to prefix bits gives the key of the block of that size holding
 * it.  key has CIDR_KEY_MAX bytes; returns the length used */
#define CIDR_KEY_MAX 18
size_t cidr_key(const struct ipaddr *ip, unsigned prefix, char *key);

#endif
