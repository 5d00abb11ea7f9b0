/*
 * hdrset.c - the headers the policy reads (see hdrset.h).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "addr/addr.h"
#include "hdrset.h"
#include "route.h"
#include "util/util.h"

static const struct {
	const char *name;
	enum hdr_kind kind;
} names[] = {
    {"From", HDR_FROM},
    {"Sender", HDR_SENDER},
    {"Reply-To", HDR_REPLY_TO},
    {ROUTE_HEADER, HDR_ROUTE},
};

enum hdr_kind
hdr_kind(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < NELEM(names); i++)
		if (strlen(names[i].name) == len && m3_ncasecmp(names[i].name, name, len) == 0)
			return names[i].kind;
	return HDR_OTHER;
}

/* unfold - CR and LF out, blanks trimmed, at most max bytes; NULL if no memory */
static char *
unfold(const char *v, size_t len, size_t max)
{
	char *out = malloc((len < max ? len : max) + 1);
	size_t i, o = 0, start = 0;

	if (out == NULL)
		return NULL;
	for (i = 0; i < len && o < max; i++)
		if (v[i] != '\r' && v[i] != '\n')
			out[o++] = v[i];
	while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\t'))
		o--;
	while (start < o && (out[start] == ' ' || out[start] == '\t'))
		start++;
	memmove(out, out + start, o - start);
	out[o - start] = '\0';
	return out;
}

static int
keep(char **slot, size_t *n, const char *v, size_t len)
{
	if (*n < HDRSET_KEEP) {
		slot[*n] = unfold(v, len, ADDR_HEADER_MAX + 1);
		if (slot[*n] == NULL)
			return -1;
	}
	(*n)++;
	return 0;
}

int
hdrset_add(struct hdrset *h, enum hdr_kind k, const char *value, size_t len)
{
	switch (k) {
	case HDR_FROM:
		return keep(h->from, &h->n_from, value, len);
	case HDR_SENDER:
		return keep(h->sender, &h->n_sender, value, len);
	case HDR_REPLY_TO:
		h->n_reply_to++;
		return 0;
	case HDR_ROUTE:
		if (h->n_route++ == 0) {
			h->route = unfold(value, len, ROUTE_TEXT_MAX + 1);
			if (h->route == NULL)
				return -1;
		}
		return 0;
	case HDR_OTHER:
		break;
	}
	return 0;
}

void
hdrset_view(const struct hdrset *h, struct msg_headers *out)
{
	memset(out, 0, sizeof(*out));
	out->from = (const char *const *)h->from;
	out->n_from = h->n_from;
	out->sender = (const char *const *)h->sender;
	out->n_sender = h->n_sender;
	out->n_reply_to = h->n_reply_to;
}

void
hdrset_clear(struct hdrset *h)
{
	size_t i;

	for (i = 0; i < HDRSET_KEEP; i++) {
		free(h->from[i]);
		free(h->sender[i]);
	}
	free(h->route);
	memset(h, 0, sizeof(*h));
}
