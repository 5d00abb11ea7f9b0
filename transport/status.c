/*
 * status.c - the pipe(8) exit map: the one place that turns an outcome
 * into what Postfix reads.  pipe(8) defers only on exit 75 (EX_TEMPFAIL)
 * and 71 (EX_OSERR); every other status bounces, and a first output line
 * that starts with 4.X.Y or 5.X.Y gives Postfix the status and the text
 * for its log and its bounce.  So:
 *
 *   delivered    exit 0, nothing printed
 *   deferred     exit 75, "4.X.Y text"
 *   bounced      exit 69 (EX_UNAVAILABLE), "5.X.Y text"
 *
 * and an outcome of a kind this does not know defers.
 */
#include "config.h"

#include <stdio.h>
#include <sysexits.h>

#include "deliver.h"

int
pipe_status(const struct outcome *o, FILE *out)
{
	if (o->line[0] != '\0') {
		fprintf(out, "%s\n", o->line);
		fflush(out);
	}
	switch (o->kind) {
	case OUT_SENT:
		return EX_OK;
	case OUT_BOUNCE:
		return EX_UNAVAILABLE;
	case OUT_DEFER:
		break;
	}
	return EX_TEMPFAIL;
}
