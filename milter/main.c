/*
 * m365-milter - main(): argv, configuration, logging.  The daemon itself
 * (libmilter callbacks, privilege drop, reload) is the [milter] work item;
 * today this program checks its configuration (-n) and says plainly that
 * it cannot run yet.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"

static void
usage(void)
{
	fprintf(stderr, "usage: m365-milter [-f] [-n] [-c FILE]\n"
			"  -c FILE  configuration (default %s)\n"
			"  -n       check the configuration and exit\n"
			"  -f       stay in the foreground, log to stderr\n",
		M3_CONFIG_FILE);
}

int
main(int argc, char **argv)
{
	const char *conf_file = M3_CONFIG_FILE;
	int check = 0, foreground = 0, ch;
	struct conf *conf;

	while ((ch = getopt(argc, argv, "c:fnh")) != -1) {
		switch (ch) {
		case 'c':
			conf_file = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		case 'n':
			check = 1;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (optind != argc) {
		usage();
		return 2;
	}
	log_open("m365-milter", check || foreground ? LOG_TO_STDERR : LOG_TO_SYSLOG, 0);
	conf = conf_load_logged(conf_file);
	if (conf == NULL) {
		log_errx("%s: configuration not usable", conf_file);
		return 1;
	}
	if (check) {
		printf("configuration OK\n");
		conf_free(conf);
		return 0;
	}
	log_errx("the milter daemon is not built yet; only -n works in this version");
	conf_free(conf);
	return 1;
}
