/*
 * fuzz_message.c - libFuzzer target for the message reader of
 * m365-transport (the message body comes from whoever sent it): header
 * fields, the headers the policy reads, the wire form with and without
 * the policy's edits, and the headers of a delivery report.  Properties:
 * the wire form ends with CRLF "." CRLF, holds no bare LF, and never a
 * route header.
 *
 *   tests/fuzz/fuzz_message -max_total_time=60 tests/fuzz/corpus/message
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
sink(void *arg, const char *p, size_t n)
{
	size_t *total = arg;

	(void)p;
	*total += n;
	return 0;
}

static void
check_wire(const struct message *m)
{
	size_t i, hdr_end = m->wire_len;

	if (m->wire_len < 3 || memcmp(m->wire + m->wire_len - 3, ".\r\n", 3) != 0)
		abort();
	for (i = 0; i < m->wire_len; i++)
		if (m->wire[i] == '\n' && (i == 0 || m->wire[i - 1] != '\r'))
			abort();
	/* The header section ends at the first empty line. */
	for (i = 0; i + 1 < m->wire_len; i++)
		if ((i == 0 || m->wire[i - 1] == '\n') && m->wire[i] == '\r' &&
		    m->wire[i + 1] == '\n') {
			hdr_end = i;
			break;
		}
	/* No route header there (at the start of a line). */
	for (i = 0; i + 18 <= hdr_end; i++)
		if ((i == 0 || m->wire[i - 1] == '\n') &&
		    m3_ncasecmp(m->wire + i, "X-M365Relay-Route:", 18) == 0)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct message m;
	struct edits e;
	struct msg_err err;
	char *buf;
	size_t total = 0;

	if (size > 256 * 1024)
		return 0;
	buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	if (message_parse(buf, size, &m, &err) < 0) {
		message_free(&m);
		return 0;
	}
	if (message_wire(&m, NULL, &err) == 0)
		check_wire(&m);
	memset(&e, 0, sizeof(e));
	e.e[0] = (struct edit){EDIT_HEADER_SET, "From", "Scanner <scanner@contoso.com>"};
	e.e[1] = (struct edit){EDIT_HEADER_ADD, "Reply-To", "Scanner <scan@printer.local>"};
	e.e[2] = (struct edit){EDIT_HEADER_DROP, "Sender", NULL};
	e.e[3] = (struct edit){EDIT_ROUTE, "X-M365Relay-Route", NULL};
	e.n = 4;
	if (message_wire(&m, &e, &err) == 0)
		check_wire(&m);
	message_report_headers(&m, sink, &total);
	if (total > m.raw_len)
		abort();
	message_free(&m);
	return 0;
}
