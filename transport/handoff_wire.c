/*
 * handoff_wire.c - the handoff request's header and strings (handoff_wire.h).
 */
#include "config.h"

#include <string.h>

#include "handoff_wire.h"

static const char magic[8] = "M365HO1";

void
handoff_header(unsigned char out[HANDOFF_HDR], uint32_t argc, uint32_t envc, uint32_t len)
{
	memcpy(out, magic, sizeof(magic));
	memcpy(out + 8, &argc, 4);
	memcpy(out + 12, &envc, 4);
	memcpy(out + 16, &len, 4);
}

int
handoff_parse_header(const unsigned char h[HANDOFF_HDR], struct handoff_req *r, const char **why)
{
	if (memcmp(h, magic, sizeof(magic)) != 0) {
		*why = "not a handoff request (another version of m365-handoff?)";
		return -1;
	}
	memcpy(&r->argc, h + 8, 4);
	memcpy(&r->envc, h + 12, 4);
	memcpy(&r->len, h + 16, 4);
	if (r->argc < 1 || r->argc > HANDOFF_MAX_ARGS || r->envc > HANDOFF_MAX_ENV) {
		*why = "too many or no arguments, or too many environment entries";
		return -1;
	}
	/* every string holds at least its NUL */
	if (r->len > HANDOFF_MAX_LEN || r->len < r->argc + r->envc) {
		*why = "string block of an impossible length";
		return -1;
	}
	return 0;
}

int
handoff_split(char *block, const struct handoff_req *r, char **argv, char **envp, const char **why)
{
	size_t off = 0, i, n = (size_t)r->argc + r->envc;

	for (i = 0; i < n; i++) {
		char *s = block + off, *nul;
		if (off >= r->len || (nul = memchr(s, '\0', r->len - off)) == NULL) {
			*why = "fewer strings than the header says";
			return -1;
		}
		if (i < r->argc) {
			argv[i] = s;
		} else {
			char *eq = strchr(s, '=');
			if (eq == NULL || eq == s) {
				*why = "an environment entry that is not NAME=value";
				return -1;
			}
			envp[i - r->argc] = s;
		}
		off += (size_t)(nul - s) + 1;
	}
	if (off != r->len) {
		*why = "bytes after the last string";
		return -1;
	}
	if (argv[0][0] == '\0') {
		*why = "no program name";
		return -1;
	}
	argv[r->argc] = NULL;
	envp[r->envc] = NULL;
	return 0;
}
