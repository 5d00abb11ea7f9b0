/*
 * message.h - the message as pipe(8) hands it over on standard input:
 * read once (bounded), the milter's route header found and removed, and
 * the wire form built once (CRLF line ends, dot-stuffing, final ".").
 *
 * Errors: message_read() returns 0, or -1 with err filled (too large,
 * a read error); a message is never silently cut.
 */
#ifndef M3_MESSAGE_H
#define M3_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>

#define MSG_KEEP_VALUES 2

struct message {
	char *wire;	 /* CRLF, dot-stuffed, route header removed, ".\r\n" */
	size_t wire_len;
	unsigned long size; /* octets without the stuffing and final dot (SIZE=) */
	bool eightbit;	    /* a byte >= 0x80 anywhere */
	bool utf8_headers;  /* a byte >= 0x80 in the header (SMTPUTF8) */
	size_t n_route;	    /* route headers found (and removed) */
	char route[1024];   /* the first one's value, unfolded */
	char *from[MSG_KEEP_VALUES], *sender[MSG_KEEP_VALUES];
	size_t n_from, n_sender, n_reply_to;
	char subject[256];
	char *headers;	    /* the header block as received (for a DSN) */
	size_t headers_len;
};

/* message_read - read fd to EOF (at most max bytes) and prepare it */
int message_read(int fd, size_t max, struct message *m, char *err, size_t errlen);
/* message_parse - the same from a buffer (tests, fuzzing) */
int message_parse(const char *buf, size_t len, struct message *m, char *err,
		  size_t errlen);
/* message_free - release */
void message_free(struct message *m);

#endif
