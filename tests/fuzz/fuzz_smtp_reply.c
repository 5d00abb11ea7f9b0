/*
 * fuzz_smtp_reply.c - libFuzzer target for what m365-transport reads
 * from the server (Microsoft, or whoever answers on the network): reply
 * lines, multi-line replies, EHLO keywords, then the classification of
 * the reply, its hint and the outcome line that Postfix will log.
 * Properties: a complete reply's code is 100-599; the outcome line is
 * NUL-terminated within its buffer and holds no CR or LF.
 *
 *   tests/fuzz/fuzz_smtp_reply -max_total_time=60 tests/fuzz/corpus/smtp_reply
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/outcome.h"
#include "net/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply r;
	struct outcome o;
	unsigned ext = 0;
	unsigned long size_limit = 0;
	const char *err;
	size_t p = 0;

	if (size > 64 * 1024)
		return 0;
	smtp_reply_begin(&r);
	r.ehlo = size > 0 && (data[0] & 1);
	while (p < size) {
		const uint8_t *nl = memchr(data + p, '\n', size - p);
		size_t len = nl ? (size_t)(nl - (data + p)) : size - p;
		char line[4096];
		int rc;

		if (len > 0 && data[p + len - 1] == '\r')
			len--;
		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		memcpy(line, data + p, len);
		line[len] = '\0';
		p += nl ? (size_t)(nl - (data + p)) + 1 : size - p;
		len = strlen(line); /* net_readline's lines are C strings */
		rc = smtp_reply_add(&r, line, len, &err);
		if (r.ehlo && r.lines > 1 && len > 4)
			smtp_ehlo_keyword(&ext, &size_limit, line + 4, len - 4);
		if (rc < 0) {
			smtp_reply_begin(&r);
			continue;
		}
		if (rc == 1) {
			if (r.code < 100 || r.code > 599)
				abort();
			(void)reply_classify(&r);
			(void)reply_hint(&r);
			outcome_reply(&o, "fuzz.example", &r);
			if (memchr(o.line, '\0', sizeof(o.line)) == NULL || strchr(o.line, '\r') ||
			    strchr(o.line, '\n'))
				abort();
			smtp_reply_begin(&r);
			r.ehlo = (data[0] & 1) != 0;
		}
	}
	return 0;
}
