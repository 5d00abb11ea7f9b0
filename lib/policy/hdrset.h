/*
 * hdrset.h - the message headers the policy reads, and their bounds: the
 * one place that knows them.  The milter feeds it the headers the MTA
 * hands over one by one; the transport feeds it the headers it parses
 * from the message on its standard input.  Both then give the policy the
 * same struct msg_headers, and both recognise the route header the same
 * way.
 *
 * A kept value is unfolded (CR and LF removed), trimmed, and cut one byte
 * past the longest the parsers accept (ADDR_HEADER_MAX, ROUTE_TEXT_MAX), so
 * that an overlong value is refused as too long rather than held in full.
 * Only the first HDRSET_KEEP values of a name are kept; all are counted.
 *
 * Errors: hdrset_add() returns -1 when memory runs out.
 */
#ifndef M3_HDRSET_H
#define M3_HDRSET_H

#include <stddef.h>

#include "policy.h"

enum hdr_kind { HDR_OTHER, HDR_FROM, HDR_SENDER, HDR_REPLY_TO, HDR_ROUTE };

#define HDRSET_KEEP 2

struct hdrset {
	char *from[HDRSET_KEEP];
	size_t n_from;
	char *sender[HDRSET_KEEP];
	size_t n_sender;
	size_t n_reply_to;
	char *route; /* the first route header's value */
	size_t n_route;
};

/* hdr_kind - which of the policy's headers a field name is (ASCII case folded) */
enum hdr_kind hdr_kind(const char *name, size_t len);
/* hdrset_add - note one header value of kind k */
int hdrset_add(struct hdrset *h, enum hdr_kind k, const char *value, size_t len);
/* hdrset_view - what the policy reads (pointers into h) */
void hdrset_view(const struct hdrset *h, struct msg_headers *out);
/* hdrset_clear - free the kept values and start again */
void hdrset_clear(struct hdrset *h);

#endif
