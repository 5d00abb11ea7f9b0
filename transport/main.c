/*
 * m365-transport - main().  Delivery (the SMTP client, modes, pacing,
 * journal) is the [transport] work item; today the program checks its
 * configuration (-n) and otherwise defers every message it is given.
 *
 * Postfix pipe(8) bounces on every exit status except 75 (EX_TEMPFAIL) and
 * 71 (EX_OSERR), so anything that is not a finished delivery exits 75 with
 * an RFC 3463 status on the first output line.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"

int
main(int argc, char **argv)
{
	const char *conf_file = M3_CONFIG_FILE;
	struct conf *conf;
	int check = 0, ch;

	opterr = 0;
	while ((ch = getopt(argc, argv, "c:nq:f:s:")) != -1) {
		switch (ch) {
		case 'c':
			conf_file = optarg;
			break;
		case 'n':
			check = 1;
			break;
		default:
			break;
		}
	}
	log_open("m365-transport", check ? LOG_TO_STDERR : LOG_TO_SYSLOG, 0);
	conf = conf_load_logged(conf_file);
	if (check) {
		if (conf == NULL)
			return 1;
		printf("configuration OK\n");
		conf_free(conf);
		return 0;
	}
	conf_free(conf);
	printf("4.3.0 m365-transport cannot deliver yet in this version; "
	       "message deferred\n");
	return EX_TEMPFAIL;
}
