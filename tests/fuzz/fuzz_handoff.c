/*
 * fuzz_handoff.c - libFuzzer target for the handoff request
 * (transport/handoff_wire.h) that m365-transport -D reads from its
 * socket: a header and a string block of arbitrary bytes.  Properties
 * checked: what parses has exactly the counted strings, each inside the
 * block and ended by its NUL, every environment entry NAME=value; a
 * request made with handoff_header() from those strings parses back to
 * the same strings.
 *
 *   tests/fuzz/fuzz_handoff -max_total_time=60 tests/fuzz/corpus/handoff
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handoff_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char hdr[HANDOFF_HDR];
	struct handoff_req r, back;
	char *block, **argv, **envp, **argv2, **envp2;
	const char *why = NULL;
	size_t i;

	if (size < HANDOFF_HDR || size > HANDOFF_HDR + 65536)
		return 0;
	if (handoff_parse_header(data, &r, &why) < 0) {
		if (why == NULL)
			abort();
		return 0;
	}
	if (r.len != size - HANDOFF_HDR)
		return 0; /* the daemon reads exactly len bytes */
	block = malloc(r.len);
	argv = calloc((size_t)r.argc + 1, sizeof(*argv));
	envp = calloc((size_t)r.envc + 1, sizeof(*envp));
	argv2 = calloc((size_t)r.argc + 1, sizeof(*argv2));
	envp2 = calloc((size_t)r.envc + 1, sizeof(*envp2));
	if (block == NULL || argv == NULL || envp == NULL || argv2 == NULL || envp2 == NULL)
		abort();
	memcpy(block, data + HANDOFF_HDR, r.len);
	if (handoff_split(block, &r, argv, envp, &why) == 0) {
		char *copy = malloc(r.len);
		if (copy == NULL)
			abort();
		if (argv[r.argc] != NULL || envp[r.envc] != NULL || argv[0][0] == '\0')
			abort();
		for (i = 0; i < r.argc; i++)
			if (argv[i] < block || argv[i] + strlen(argv[i]) >= block + r.len)
				abort();
		for (i = 0; i < r.envc; i++)
			if (strchr(envp[i], '=') == NULL || envp[i][0] == '=')
				abort();
		/* what parsed, written again, parses to the same strings */
		handoff_header(hdr, r.argc, r.envc, r.len);
		if (handoff_parse_header(hdr, &back, &why) < 0 || back.argc != r.argc ||
		    back.envc != r.envc || back.len != r.len)
			abort();
		memcpy(copy, block, r.len);
		if (handoff_split(copy, &back, argv2, envp2, &why) < 0)
			abort();
		for (i = 0; i < r.argc; i++)
			if (strcmp(argv[i], argv2[i]) != 0)
				abort();
		for (i = 0; i < r.envc; i++)
			if (strcmp(envp[i], envp2[i]) != 0)
				abort();
		free(copy);
	} else if (why == NULL) {
		abort();
	}
	free(block);
	free(argv);
	free(envp);
	free(argv2);
	free(envp2);
	return 0;
}
