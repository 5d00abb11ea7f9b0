/*
 * fuzz_addr.c - libFuzzer target for the address parsers (untrusted bytes
 * from MAIL FROM, RCPT TO and From/Sender/Reply-To headers).  Checks the
 * invariants as well as memory safety: whatever parses formats back and
 * parses again to the same address.
 *
 *   ./configure CC=clang --enable-fuzzing --enable-sanitizers && make
 *   tests/fuzz/fuzz_addr -max_total_time=60 tests/fuzz/corpus/addr
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr/addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mailbox mb[8];
	struct addr a, b;
	struct addr_err e;
	char buf[2048];
	size_t n, i;

	if (addr_parse_path((const char *)data, size, true, &a, &e) == 0 && !addr_is_null(&a)) {
		if (addr_format(&a, buf, sizeof(buf)) < 0)
			abort();
		if (addr_parse_path(buf, strlen(buf), false, &b, &e) != 0 || !addr_equal(&a, &b))
			abort();
	}
	if (addr_parse_list((const char *)data, size, mb, 8, &n, &e) == 0) {
		for (i = 0; i < n; i++) {
			struct mailbox back[2];
			size_t m;
			if (addr_format_mailbox(mb[i].display, &mb[i].addr, buf, sizeof(buf)) < 0)
				continue; /* too long to write back: refused, fine */
			if (addr_parse_list(buf, strlen(buf), back, 2, &m, &e) != 0 || m != 1 ||
			    !addr_equal(&back[0].addr, &mb[i].addr))
				abort();
		}
	}
	return 0;
}
