/*
 * message.h - the message as pipe(8) hands it over on standard input:
 * read once (bounded), its header fields found, the headers the policy
 * reads noted (hdrset.h), and the wire form built once, with the verdict's
 * changes applied (CRLF line ends, dot-stuffing, final ".").  The route
 * header never leaves: the wire form and the copy of the headers that a
 * delivery report carries both go without it.
 *
 * Errors: -1 with struct msg_err: MSG_ETOOLARGE (over transport's
 * max_size: the caller bounces), MSG_EREAD (standard input failed),
 * MSG_ENOMEM (memory, or more than MSG_FIELDS_MAX header fields); a message
 * is never silently cut.
 */
#ifndef M3_MESSAGE_H
#define M3_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "policy/hdrset.h"
#include "policy/policy.h"

#define MSG_FIELDS_MAX 10000 /* header fields; Postfix's header_count_limit is 1000 */

enum msg_code {
	MSG_OK,
	MSG_ETOOLARGE, /* larger than the limit it was read with */
	MSG_EREAD,     /* the input failed */
	MSG_ENOMEM,    /* memory; header fields past MSG_FIELDS_MAX */
};

struct msg_err {
	enum msg_code code;
	char msg[160];
};

struct field {
	size_t off, len; /* the whole field in raw: name, value, continuation lines */
	enum hdr_kind kind;
};

struct message {
	char *raw; /* as read */
	size_t raw_len;
	size_t head_off; /* where the header section starts: after an mbox "From " line */
	size_t body_off; /* where the blank line after the headers starts (raw_len if none) */
	struct field *fields;
	size_t n_fields;
	struct hdrset hdr; /* From, Sender, Reply-To, the route: what the policy reads */
	char subject[256];
	bool eightbit;     /* a byte >= 0x80 anywhere */
	bool utf8_headers; /* a byte >= 0x80 in the header (SMTPUTF8) */

	/* message_wire(): */
	char *wire; /* CRLF, dot-stuffed, edits applied, no route header, ".\r\n" */
	size_t wire_len;
	unsigned long size; /* octets without the stuffing and final dot (SIZE=) */
};

/* message_read - read fd to EOF (at most max bytes) and parse it */
int message_read(int fd, size_t max, struct message *m, struct msg_err *err);
/* message_parse - the same from a buffer the message takes over (malloc'd) */
int message_parse(char *buf, size_t len, struct message *m, struct msg_err *err);
/* message_wire - build the wire form with the edits (NULL: none but the route) */
int message_wire(struct message *m, const struct edits *e, struct msg_err *err);
/* message_report_headers - the header section for a delivery report: as
 * received, without the route header; write(fd-like) through fn */
int message_report_headers(const struct message *m, int (*fn)(void *, const char *, size_t),
                           void *arg);
/* message_free - release */
void message_free(struct message *m);

#endif
