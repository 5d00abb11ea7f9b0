/*
 * message.c - read and prepare the message.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "message.h"
#include "route.h"
#include "util.h"

/* One unfolded header value, bounded. */
static char *
unfold(const char *v, size_t len, size_t max)
{
	char *out = malloc((len < max ? len : max) + 1);
	size_t i, o = 0;

	if (out == NULL)
		return NULL;
	for (i = 0; i < len && o < max; i++) {
		if (v[i] == '\r' || v[i] == '\n')
			continue;
		out[o++] = v[i];
	}
	while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\t'))
		o--;
	i = 0;
	while (i < o && (out[i] == ' ' || out[i] == '\t'))
		i++;
	memmove(out, out + i, o - i);
	out[o - i] = '\0';
	return out;
}

static void
keep(char **slot, size_t *n, const char *v, size_t len)
{
	if (*n < MSG_KEEP_VALUES)
		slot[*n] = unfold(v, len, 8193);
	(*n)++;
}

static bool
name_is(const char *line, size_t nlen, const char *name)
{
	return nlen == strlen(name) && m3_ncasecmp(line, name, nlen) == 0;
}

int
message_parse(const char *buf, size_t len, struct message *m, char *err,
	      size_t errlen)
{
	size_t i = 0, o = 0, cap;
	bool in_headers = true, skipping = false;
	char *w;

	memset(m, 0, sizeof(*m));
	/* Worst case: every line is "." (doubled) and LF becomes CRLF. */
	cap = len * 3 + 8;
	w = malloc(cap);
	if (w == NULL) {
		snprintf(err, errlen, "out of memory (%zu bytes)", len);
		return -1;
	}
	while (i < len) {
		const char *line = buf + i;
		const char *nl = memchr(line, '\n', len - i);
		size_t l = nl ? (size_t)(nl - line) : len - i;
		size_t content = l > 0 && line[l - 1] == '\r' ? l - 1 : l;
		size_t j;

		i += nl ? l + 1 : l;
		for (j = 0; j < content; j++)
			if ((unsigned char)line[j] >= 0x80) {
				m->eightbit = true;
				if (in_headers)
					m->utf8_headers = true;
			}
		if (in_headers) {
			if (content == 0) {
				in_headers = false;
				skipping = false;
				m->headers_len = (size_t)(line - buf);
			} else if (line[0] == ' ' || line[0] == '\t') {
				if (skipping)
					continue; /* a continuation of a removed header */
			} else {
				const char *colon = memchr(line, ':', content);
				size_t nlen = colon ? (size_t)(colon - line) : 0;
				/* The value runs on over continuation lines. */
				size_t vend = i;
				while (vend < len && (buf[vend] == ' ' || buf[vend] == '\t')) {
					const char *n2 = memchr(buf + vend, '\n', len - vend);
					vend = n2 ? (size_t)(n2 - buf) + 1 : len;
				}
				skipping = false;
				if (colon != NULL) {
					const char *v = colon + 1;
					size_t vlen = (size_t)(buf + vend - v);
					if (name_is(line, nlen, ROUTE_HEADER)) {
						if (m->n_route++ == 0) {
							char *u = unfold(v, vlen, sizeof(m->route) - 1);
							if (u != NULL)
								m3_strlcpy(m->route, u, sizeof(m->route));
							free(u);
						}
						skipping = true;
						continue;
					}
					if (name_is(line, nlen, "From"))
						keep(m->from, &m->n_from, v, vlen);
					else if (name_is(line, nlen, "Sender"))
						keep(m->sender, &m->n_sender, v, vlen);
					else if (name_is(line, nlen, "Reply-To"))
						m->n_reply_to++;
					else if (name_is(line, nlen, "Subject") && m->subject[0] == '\0') {
						char *u = unfold(v, vlen, sizeof(m->subject) - 1);
						if (u != NULL)
							m3_strlcpy(m->subject, u, sizeof(m->subject));
						free(u);
					}
				}
			}
		}
		if (content > 0 && line[0] == '.')
			w[o++] = '.'; /* dot-stuffing (RFC 5321 4.5.2) */
		memcpy(w + o, line, content);
		o += content;
		w[o++] = '\r';
		w[o++] = '\n';
		m->size += content + 2;
	}
	if (in_headers)
		m->headers_len = len;
	memcpy(w + o, ".\r\n", 3);
	o += 3;
	m->wire = w;
	m->wire_len = o;
	m->headers = malloc(m->headers_len + 1);
	if (m->headers == NULL) {
		snprintf(err, errlen, "out of memory");
		message_free(m);
		return -1;
	}
	memcpy(m->headers, buf, m->headers_len);
	m->headers[m->headers_len] = '\0';
	return 0;
}

int
message_read(int fd, size_t max, struct message *m, char *err, size_t errlen)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	int rc;

	memset(m, 0, sizeof(*m));
	if (buf == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (;;) {
		ssize_t r;
		if (len == cap) {
			char *nb;
			if (cap > max) {
				free(buf);
				snprintf(err, errlen,
					 "message larger than the configured limit of %zu bytes",
					 max);
				return -1;
			}
			cap *= 2;
			nb = realloc(buf, cap);
			if (nb == NULL) {
				free(buf);
				snprintf(err, errlen, "out of memory (%zu bytes)", cap);
				return -1;
			}
			buf = nb;
		}
		r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			snprintf(err, errlen, "reading the message: %s", strerror(errno));
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (len > max) {
		free(buf);
		snprintf(err, errlen, "message of %zu bytes exceeds the configured limit of %zu",
			 len, max);
		return -1;
	}
	rc = message_parse(buf, len, m, err, errlen);
	free(buf);
	return rc;
}

void
message_free(struct message *m)
{
	size_t i;

	free(m->wire);
	free(m->headers);
	for (i = 0; i < MSG_KEEP_VALUES; i++) {
		free(m->from[i]);
		free(m->sender[i]);
	}
	memset(m, 0, sizeof(*m));
}
