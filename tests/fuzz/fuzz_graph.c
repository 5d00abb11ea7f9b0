/*
 * fuzz_graph.c - libFuzzer target for mode graph's parsers
 * (transport/graph_wire.c): the MIME built for Graph from a message (its
 * header comes from whoever sent it) and what Graph answers (headers and
 * a JSON body, from the network).  The input is split at the first NUL:
 * the message before it, the answer after.  Properties: every envelope
 * recipient is named in a To, Cc or Bcc field of the MIME; the MIME holds
 * no final "." line of the wire form; the answer's strings are printable
 * and NUL-terminated; every answer maps to a 2xx, 4xx or 5xx reply.
 *
 *   tests/fuzz/fuzz_graph -max_total_time=60 tests/fuzz/corpus/graph
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "message.h"
#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const rcpts[] = {"alice@contoso.com", "Bob@Example.net", "\"q x\"@contoso.com"};

/* no control character (a log line must stay one line); UTF-8 allowed */
static void
check_no_controls(const char *s, size_t size)
{
	size_t i, n = strnlen(s, size);

	if (n == size)
		abort();
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
			abort();
}

static void
check_printable(const char *s, size_t size)
{
	size_t i, n = strnlen(s, size);

	if (n == size)
		abort(); /* not NUL-terminated */
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			abort();
}

static void
mime(const uint8_t *data, size_t size)
{
	struct message m;
	struct msg_err err;
	struct sbuf out;
	char note[512], *buf;
	size_t i;

	if (size > 64 * 1024)
		return;
	buf = malloc(size + 1);
	if (buf == NULL)
		return;
	memcpy(buf, data, size);
	if (message_parse(buf, size, &m, &err) < 0 || message_wire(&m, NULL, &err) < 0) {
		message_free(&m);
		return;
	}
	sbuf_init(&out, m.wire_len + 4096);
	if (graph_mime(m.wire, m.wire_len, rcpts, NELEM(rcpts), &out, note, sizeof(note)) == 0) {
		const char *s = sbuf_str(&out);
		/* the wire form's final dot never goes to Graph (a last line
		 * "." of the message's own, stuffed to "..", does) */
		bool own_dot =
		    m.wire_len >= 8 && memcmp(m.wire + m.wire_len - 8, "\n..\r\n.\r\n", 8) == 0;
		if (!own_dot && out.len >= 3 && memcmp(s + out.len - 3, ".\r\n", 3) == 0 &&
		    (out.len == 3 || s[out.len - 4] == '\n'))
			abort();
		/* every recipient named somewhere (a field as written, or our Bcc) */
		for (i = 0; i < NELEM(rcpts); i++)
			if (strcasestr(s, rcpts[i]) == NULL)
				abort();
		check_no_controls(note, sizeof(note));
	}
	sbuf_free(&out);
	message_free(&m);
}

static void
answer(const uint8_t *data, size_t size)
{
	struct graph_answer a;
	struct smtp_reply r;
	const uint8_t *p = data, *end = data + size, *nl;

	memset(&a, 0, sizeof(a));
	a.status = size > 0 ? 100 + data[0] * 2 : 0;
	/* header lines up to an empty line, then the body */
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL || nl == p || (nl == p + 1 && p[0] == '\r')) {
			p = nl ? nl + 1 : end;
			break;
		}
		graph_header((const char *)p, (size_t)(nl + 1 - p), &a);
		p = nl + 1;
	}
	graph_body((const char *)p, (size_t)(end - p), &a);
	check_printable(a.code, sizeof(a.code));
	check_printable(a.message, sizeof(a.message));
	check_printable(a.request_id, sizeof(a.request_id));
	check_printable(a.client_id, sizeof(a.client_id));
	if (a.has_retry_after && a.retry_after > GRAPH_RETRY_MAX)
		abort();
	graph_reply(&a, &r);
	if (r.code / 100 != 2 && r.code / 100 != 4 && r.code / 100 != 5)
		abort();
	if (memchr(r.text, '\0', sizeof(r.text)) == NULL || strpbrk(r.text, "\r\n") != NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t split = nul ? (size_t)(nul - data) : size;

	mime(data, split);
	if (nul != NULL)
		answer(nul + 1, size - split - 1);
	return 0;
}
