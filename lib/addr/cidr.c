/*
 * cidr.c - address and CIDR parsing and matching.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "util/util.h"

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void
unmap(struct ipaddr *ip)
{
	if (ip->family == AF_INET6 && memcmp(ip->b, v4mapped, 12) == 0) {
		memmove(ip->b, ip->b + 12, 4);
		memset(ip->b + 4, 0, 12);
		ip->family = AF_INET;
	}
}

int
ip_parse(const char *s, struct ipaddr *ip)
{
	char tmp[64];
	size_t n = strlen(s);

	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	if (n >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	if (m3_ncasecmp(tmp, "IPv6:", 5) == 0)
		memmove(tmp, tmp + 5, n - 4);
	memset(ip, 0, sizeof(*ip));
	if (inet_pton(AF_INET, tmp, ip->b) == 1) {
		ip->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, tmp, ip->b) == 1) {
		ip->family = AF_INET6;
		unmap(ip);
		return 0;
	}
	return -1;
}

int
ip_from_sockaddr(const void *sa, struct ipaddr *ip)
{
	const struct sockaddr *s = sa;

	memset(ip, 0, sizeof(*ip));
	if (s == NULL)
		return -1;
	if (s->sa_family == AF_INET) {
		const struct sockaddr_in *in = sa;
		ip->family = AF_INET;
		memcpy(ip->b, &in->sin_addr, 4);
		return 0;
	}
	if (s->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = sa;
		ip->family = AF_INET6;
		memcpy(ip->b, &in6->sin6_addr, 16);
		unmap(ip);
		return 0;
	}
	return -1;
}

const char *
ip_format(const struct ipaddr *ip, char *buf, unsigned size)
{
	if (ip->family != AF_INET && ip->family != AF_INET6) {
		m3_strlcpy(buf, "unknown", size);
		return buf;
	}
	if (inet_ntop(ip->family, ip->b, buf, size) == NULL)
		m3_strlcpy(buf, "unknown", size);
	return buf;
}

int
cidr_parse(const char *s, struct cidr *c, const char **err)
{
	char tmp[64];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max, i;

	memset(c, 0, sizeof(*c));
	if (n == 0 || n >= sizeof(tmp)) {
		*err = "not an IP address";
		return -1;
	}
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	if (inet_pton(AF_INET, tmp, c->net.b) == 1) {
		c->net.family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, tmp, c->net.b) == 1) {
		c->net.family = AF_INET6;
		max = 128;
	} else {
		*err = "not an IPv4 or IPv6 address";
		return -1;
	}
	if (slash != NULL) {
		char *end;
		unsigned long p;
		if (slash[1] < '0' || slash[1] > '9') {
			*err = "prefix length is not a number";
			return -1;
		}
		p = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || p > max) {
			*err = max == 32 ? "prefix length must be 0..32"
			                 : "prefix length must be 0..128";
			return -1;
		}
		c->prefix = (unsigned)p;
	} else {
		c->prefix = max;
	}
	for (i = c->prefix; i < max; i++) {
		if (c->net.b[i / 8] & (0x80 >> (i % 8))) {
			*err = "host bits set after the prefix (write the network address)";
			return -1;
		}
	}
	if (c->net.family == AF_INET6 && c->prefix >= 96 && memcmp(c->net.b, v4mapped, 12) == 0) {
		unmap(&c->net);
		c->prefix -= 96;
	}
	return 0;
}

bool
cidr_match(const struct cidr *c, const struct ipaddr *ip)
{
	unsigned full = c->prefix / 8, rest = c->prefix % 8;

	if (c->net.family != ip->family)
		return false;
	if (memcmp(c->net.b, ip->b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((c->net.b[full] ^ ip->b[full]) & (0xff << (8 - rest))) == 0;
}

bool
cidr_equal(const struct cidr *a, const struct cidr *b)
{
	return a->net.family == b->net.family && a->prefix == b->prefix &&
	       memcmp(a->net.b, b->net.b, 16) == 0;
}

size_t
cidr_key(const struct ipaddr *ip, unsigned prefix, char *key)
{
	unsigned max = ip->family == AF_INET ? 32 : 128, full, rest;

	if (prefix > max)
		prefix = max;
	full = prefix / 8;
	rest = prefix % 8;
	key[0] = (char)(ip->family == AF_INET ? 4 : 6);
	key[1] = (char)prefix;
	memcpy(key + 2, ip->b, full);
	if (rest != 0)
		key[2 + full++] = (char)(ip->b[prefix / 8] & (0xff << (8 - rest)));
	return 2 + full;
}
