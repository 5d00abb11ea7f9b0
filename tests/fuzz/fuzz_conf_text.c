/*
 * fuzz_conf_text.c - libFuzzer target for the configuration pre-pass
 * (comment blanking, section marks, titles taken out): length and newlines
 * are preserved whatever the input.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const titled[] = {"mailbox", "domain", "s", NULL};
	struct conf_text t;
	size_t i;

	if (conf_text_prepare((const char *)data, size, titled, &t) < 0)
		return 0;
	if (t.len != size)
		abort();
	for (i = 0; i < size; i++)
		if ((data[i] == '\n') != (t.buf[i] == '\n'))
			abort();
	conf_text_free(&t);
	return 0;
}
