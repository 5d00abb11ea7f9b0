/*
 * fuzz_conf.c - libFuzzer target for the configuration loader as a whole
 * (libconfuse, then every validation rule): the configuration is a file
 * others may have edited, and every daemon and every delivery loads it.
 * The input is written to a file in a private directory and loaded; a
 * configuration that loads must also be freed cleanly, and the loader's
 * two readings of the file (conf_text's marks, libconfuse's sections) must
 * never disagree on a count.
 *
 *   tests/fuzz/fuzz_conf -max_total_time=60 tests/fuzz/corpus/conf
 */
#include "config.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], path[96];

static void
cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diag diag = {0};
	struct conf *c;
	int fd;

	if (size > 64 * 1024)
		return 0;
	if (dir[0] == '\0') {
		snprintf(dir, sizeof(dir), "/tmp/fuzz_conf.XXXXXX");
		if (mkdtemp(dir) == NULL)
			abort();
		snprintf(path, sizeof(path), "%s/m365relay.conf", dir);
		atexit(cleanup);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		abort();
	if (write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	c = conf_load(path, &diag);
	if (c != NULL && diag.n_errors != 0)
		abort();
	for (size_t i = 0; i < diag.n; i++)
		if (strstr(diag.lines[i], "please report this file") != NULL)
			abort();
	conf_free(c);
	diag_free(&diag);
	return 0;
}
