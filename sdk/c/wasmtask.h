/*
 * wasmtask.h: the C SDK for wasmtask handlers (guest ABI wasmtask_v1, see
 * sdk/ABI.md). One header, clang + wasi-libc, no other dependency.
 *
 *   #include "wasmtask.h"
 *
 *   static int upper(void) {
 *       size_t n;
 *       const uint8_t *in = wasmtask_input(&n);
 *       ...
 *       if (wasmtask_output(out, n) < 0) return wasmtask_fail(WASMTASK_RETRYABLE, "output too large");
 *       return WASMTASK_OK;
 *   }
 *   WASMTASK_HANDLER(upper)
 *
 *   clang-14 --target=wasm32-wasi -O2 -mexec-model=reactor -o upper.wasm upper.c
 *
 * A handler returns WASMTASK_OK (0) for success, or the result of
 * wasmtask_fail / wasmtask_failf (WASMTASK_FAILED, 1). A failure is
 * retryable unless its kind is WASMTASK_PERMANENT. By default every
 * instance runs one attempt and is discarded: memory from malloc need not be
 * freed. With the manifest's "instances": "reuse" an instance runs attempt
 * after attempt: statics and the heap persist (free what you allocate per
 * attempt, or let max_memory_pages retire the instance); the SDK's own
 * caches (wasmtask_input, wasmtask_task_info) are per attempt.
 *
 * Functions returning int32_t report ABI errors as negative WASMTASK_E*
 * codes. Allocation failures abort() (the attempt ends as oom or trap).
 */
#ifndef WASMTASK_H
#define WASMTASK_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WASMTASK_ABI_VERSION "wasmtask_v1"

/* ---- The imports, one to one (sdk/ABI.md). ---- */

#define WASMTASK_IMPORT_(name) __attribute__((import_module("wasmtask_v1"), import_name(name)))
WASMTASK_IMPORT_("input_len") int32_t wasmtask_v1_input_len(void);
WASMTASK_IMPORT_("input_read") int32_t wasmtask_v1_input_read(uint32_t offset, void *buf, uint32_t limit);
WASMTASK_IMPORT_("output_write") int32_t wasmtask_v1_output_write(const void *ptr, uint32_t len);
WASMTASK_IMPORT_("fail") void wasmtask_v1_fail(int32_t kind, const void *ptr, uint32_t len);
WASMTASK_IMPORT_("log") void wasmtask_v1_log(int32_t level, const void *ptr, uint32_t len);
WASMTASK_IMPORT_("task_info") int32_t wasmtask_v1_task_info(void *buf, uint32_t limit);
WASMTASK_IMPORT_("config_get") int32_t wasmtask_v1_config_get(const void *key, uint32_t key_len, void *buf, uint32_t limit);
WASMTASK_IMPORT_("submit") int32_t wasmtask_v1_submit(const void *spec, uint32_t spec_len, void *id_buf, uint32_t id_limit);
WASMTASK_IMPORT_("heartbeat") int32_t wasmtask_v1_heartbeat(const void *ptr, uint32_t len);
WASMTASK_IMPORT_("cancelled") int32_t wasmtask_v1_cancelled(void);
#undef WASMTASK_IMPORT_

/* ---- Constants. ---- */

enum { WASMTASK_OK = 0, WASMTASK_FAILED = 1 };
enum { WASMTASK_PERMANENT = 0, WASMTASK_RETRYABLE = 1 };
enum { WASMTASK_DEBUG = -1, WASMTASK_INFO = 0, WASMTASK_WARN = 1, WASMTASK_ERROR = 2 };
enum {
	WASMTASK_EINVAL = -1,      /* invalid argument (e.g. a child spec without handler) */
	WASMTASK_ENOTFOUND = -2,   /* config key absent */
	WASMTASK_ETOOLARGE = -3,   /* past the output limit; id buffer too small */
	WASMTASK_ECANCELLED = -4,  /* reserved in wasmtask_v1 */
	WASMTASK_EUNSUPPORTED = -5, /* reserved in wasmtask_v1 */
	WASMTASK_EQUOTA = -6       /* past the children-per-attempt limit */
};
/* Room for a child task id (ids derived by the host are far shorter). */
#define WASMTASK_ID_MAX 256

/* wasmtask_attempt_seq_ counts the attempts this instance ran: a reused
 * instance (manifest "instances": "reuse") runs many, and the SDK's caches
 * are per attempt. Weak, so every translation unit shares one. */
__attribute__((weak)) uint32_t wasmtask_attempt_seq_;

/* WASMTASK_HANDLER(fn) exports fn, an `int fn(void)`, as wasmtask_handle. */
#define WASMTASK_HANDLER(fn)                                                     \
	__attribute__((export_name("wasmtask_handle"))) int32_t wasmtask_handle(void) { \
		wasmtask_attempt_seq_++;                                             \
		return (int32_t)(fn)();                                              \
	}

/* ---- Input and output. ---- */

/* wasmtask_input returns the whole task input (read once per attempt, then
 * cached) and its length in *len. It is followed by a NUL byte, not counted
 * in *len. */
static inline const uint8_t *wasmtask_input(size_t *len) {
	static uint8_t *buf;
	static size_t n;
	static uint32_t seq;
	if (!buf || seq != wasmtask_attempt_seq_) {
		free(buf);
		seq = wasmtask_attempt_seq_;
		int32_t total = wasmtask_v1_input_len();
		if (total < 0) total = 0;
		buf = (uint8_t *)malloc((size_t)total + 1);
		if (!buf) abort();
		n = 0;
		while (n < (size_t)total) {
			int32_t got = wasmtask_v1_input_read((uint32_t)n, buf + n, (uint32_t)((size_t)total - n));
			if (got <= 0) break;
			n += (size_t)got;
		}
		buf[n] = 0;
	}
	if (len) *len = n;
	return buf;
}

/* wasmtask_output appends n bytes to the output: 0, or WASMTASK_ETOOLARGE
 * past the plugin's output limit (the attempt then ends as output_too_large). */
static inline int32_t wasmtask_output(const void *p, size_t n) {
	int32_t r = wasmtask_v1_output_write(p, (uint32_t)n);
	return r < 0 ? r : 0;
}

static inline int32_t wasmtask_output_str(const char *s) { return wasmtask_output(s, strlen(s)); }

/* vformat_ returns a malloc'd, formatted string and its length. */
static inline char *wasmtask_vformat_(size_t *len, const char *fmt, va_list ap) {
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0) n = 0;
	char *s = (char *)malloc((size_t)n + 1);
	if (!s) abort();
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	*len = (size_t)n;
	return s;
}

static inline int32_t wasmtask_outputf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int32_t wasmtask_outputf(const char *fmt, ...) {
	size_t n;
	va_list ap;
	va_start(ap, fmt);
	char *s = wasmtask_vformat_(&n, fmt, ap);
	va_end(ap);
	int32_t r = wasmtask_output(s, n);
	free(s);
	return r;
}

/* ---- Failure and logs. ---- */

/* wasmtask_fail records why the attempt fails and returns WASMTASK_FAILED,
 * for `return wasmtask_fail(WASMTASK_PERMANENT, "bad input");`. */
static inline int wasmtask_fail(int kind, const char *msg) {
	wasmtask_v1_fail(kind == WASMTASK_PERMANENT ? 0 : 1, msg, (uint32_t)strlen(msg));
	return WASMTASK_FAILED;
}

static inline int wasmtask_failf(int kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int wasmtask_failf(int kind, const char *fmt, ...) {
	size_t n;
	va_list ap;
	va_start(ap, fmt);
	char *s = wasmtask_vformat_(&n, fmt, ap);
	va_end(ap);
	wasmtask_v1_fail(kind == WASMTASK_PERMANENT ? 0 : 1, s, (uint32_t)n);
	free(s);
	return WASMTASK_FAILED;
}

/* wasmtask_log writes one log line (dropped past the plugin's log quota). */
static inline void wasmtask_log(int level, const char *msg) {
	wasmtask_v1_log(level, msg, (uint32_t)strlen(msg));
}

static inline void wasmtask_logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void wasmtask_logf(int level, const char *fmt, ...) {
	size_t n;
	va_list ap;
	va_start(ap, fmt);
	char *s = wasmtask_vformat_(&n, fmt, ap);
	va_end(ap);
	wasmtask_v1_log(level, s, (uint32_t)n);
	free(s);
}

/* ---- A small JSON reader for task_info (flat objects, string maps). ---- */

static inline const char *wasmtask_json_ws_(const char *p, const char *e) {
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
	return p;
}

/* json_skip_ returns the end of the JSON value at p, or NULL. */
static inline const char *wasmtask_json_skip_(const char *p, const char *e) {
	p = wasmtask_json_ws_(p, e);
	if (p >= e) return NULL;
	if (*p == '"') {
		for (p++; p < e; p++) {
			if (*p == '\\') p++;
			else if (*p == '"') return p + 1;
		}
		return NULL;
	}
	if (*p == '{' || *p == '[') {
		int depth = 0;
		for (; p < e; p++) {
			if (*p == '"') {
				p = wasmtask_json_skip_(p, e);
				if (!p) return NULL;
				p--;
			} else if (*p == '{' || *p == '[') depth++;
			else if ((*p == '}' || *p == ']') && --depth == 0) return p + 1;
		}
		return NULL;
	}
	while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n') p++;
	return p;
}

static inline void wasmtask_utf8_(char **o, uint32_t c) {
	char *q = *o;
	if (c < 0x80) *q++ = (char)c;
	else if (c < 0x800) { *q++ = (char)(0xC0 | c >> 6); *q++ = (char)(0x80 | (c & 0x3F)); }
	else if (c < 0x10000) { *q++ = (char)(0xE0 | c >> 12); *q++ = (char)(0x80 | (c >> 6 & 0x3F)); *q++ = (char)(0x80 | (c & 0x3F)); }
	else { *q++ = (char)(0xF0 | c >> 18); *q++ = (char)(0x80 | (c >> 12 & 0x3F)); *q++ = (char)(0x80 | (c >> 6 & 0x3F)); *q++ = (char)(0x80 | (c & 0x3F)); }
	*o = q;
}

static inline uint32_t wasmtask_hex4_(const char *p) {
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v = v << 4 | (uint32_t)(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
	}
	return v;
}

/* json_string_ decodes the JSON string at p (its opening quote) into a
 * malloc'd, NUL-terminated C string, or returns NULL. */
static inline char *wasmtask_json_string_(const char *p, const char *e) {
	const char *end = wasmtask_json_skip_(p, e);
	if (!end || *p != '"') return NULL;
	char *out = (char *)malloc((size_t)(end - p));
	if (!out) abort();
	char *o = out;
	for (p++; p < end - 1; p++) {
		if (*p != '\\') { *o++ = *p; continue; }
		switch (*++p) {
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'u': {
			if (end - 1 - p < 5) break;
			uint32_t c = wasmtask_hex4_(p + 1);
			p += 4;
			if (c >= 0xD800 && c < 0xDC00 && end - 1 - p >= 7 && p[1] == '\\' && p[2] == 'u') {
				uint32_t lo = wasmtask_hex4_(p + 3);
				if (lo >= 0xDC00 && lo < 0xE000) { c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00); p += 6; }
			}
			wasmtask_utf8_(&o, c);
			break;
		}
		default: *o++ = *p; /* \" \\ \/ */
		}
	}
	*o = 0;
	return out;
}

/* json_get_ returns the value of key in the JSON object [p, e), or NULL. */
static inline const char *wasmtask_json_get_(const char *p, const char *e, const char *key) {
	p = wasmtask_json_ws_(p, e);
	if (p >= e || *p != '{') return NULL;
	p++;
	for (;;) {
		p = wasmtask_json_ws_(p, e);
		if (p >= e || *p != '"') return NULL;
		char *k = wasmtask_json_string_(p, e);
		p = wasmtask_json_skip_(p, e);
		if (!k || !p) { free(k); return NULL; }
		int match = strcmp(k, key) == 0;
		free(k);
		p = wasmtask_json_ws_(p, e);
		if (p >= e || *p != ':') return NULL;
		p = wasmtask_json_ws_(p + 1, e);
		if (match) return p;
		p = wasmtask_json_skip_(p, e);
		if (!p) return NULL;
		p = wasmtask_json_ws_(p, e);
		if (p >= e || *p != ',') return NULL;
		p++;
	}
}

static inline char *wasmtask_json_get_string_(const char *p, const char *e, const char *key) {
	const char *v = wasmtask_json_get_(p, e, key);
	char *s = v && *v == '"' ? wasmtask_json_string_(v, e) : NULL;
	if (!s) {
		s = (char *)malloc(1);
		if (!s) abort();
		*s = 0;
	}
	return s;
}

static inline int64_t wasmtask_json_get_int_(const char *p, const char *e, const char *key) {
	const char *v = wasmtask_json_get_(p, e, key);
	if (!v) return 0;
	int neg = v < e && *v == '-';
	if (neg) v++;
	int64_t n = 0;
	while (v < e && *v >= '0' && *v <= '9') n = n * 10 + (*v++ - '0');
	return neg ? -n : n;
}

/* ---- Task info and config. ---- */

/* What task_info returns. Strings are NUL-terminated and never NULL. */
typedef struct wasmtask_info {
	const char *task_id;
	const char *run_id;
	int64_t attempt; /* 1-based */
	int64_t max_attempts;
	const char *handler;
	const char *module;      /* "sha256:<hex>" */
	int64_t deadline_ms;     /* unix milliseconds */
	const char *parent_id;   /* "" for a root task */
	const char *json;        /* the whole object, for wasmtask_label */
	size_t json_len;
} wasmtask_info;

/* wasmtask_task_info returns the attempt's description (read once per
 * attempt). */
static inline const wasmtask_info *wasmtask_task_info(void) {
	static wasmtask_info info;
	static int done;
	static uint32_t seq;
	if (done && seq == wasmtask_attempt_seq_) return &info;
	if (done) { /* a reused instance: the previous attempt's strings */
		free((void *)info.task_id);
		free((void *)info.run_id);
		free((void *)info.handler);
		free((void *)info.module);
		free((void *)info.parent_id);
		free((void *)info.json);
	}
	done = 1;
	seq = wasmtask_attempt_seq_;
	char *buf = NULL;
	int32_t n = wasmtask_v1_task_info(NULL, 0); /* size probe */
	if (n > 0) {
		buf = (char *)malloc((size_t)n + 1);
		if (!buf) abort();
		if (wasmtask_v1_task_info(buf, (uint32_t)n) != n) n = 0;
	} else {
		n = 0;
	}
	if (!buf) {
		buf = (char *)malloc(1);
		if (!buf) abort();
	}
	buf[n] = 0;
	const char *e = buf + n;
	info.json = buf;
	info.json_len = (size_t)n;
	info.task_id = wasmtask_json_get_string_(buf, e, "task_id");
	info.run_id = wasmtask_json_get_string_(buf, e, "run_id");
	info.attempt = wasmtask_json_get_int_(buf, e, "attempt");
	info.max_attempts = wasmtask_json_get_int_(buf, e, "max_attempts");
	info.handler = wasmtask_json_get_string_(buf, e, "handler");
	info.module = wasmtask_json_get_string_(buf, e, "module");
	info.deadline_ms = wasmtask_json_get_int_(buf, e, "deadline_ms");
	info.parent_id = wasmtask_json_get_string_(buf, e, "parent_id");
	return &info;
}

/* wasmtask_label returns the task's label key as a malloc'd string, or NULL. */
static inline char *wasmtask_label(const char *key) {
	const wasmtask_info *info = wasmtask_task_info();
	const char *e = info->json + info->json_len;
	const char *labels = wasmtask_json_get_(info->json, e, "labels");
	if (!labels) return NULL;
	const char *v = wasmtask_json_get_(labels, e, key);
	return v && *v == '"' ? wasmtask_json_string_(v, e) : NULL;
}

/* wasmtask_config returns a value of the plugin's manifest config as a
 * malloc'd, NUL-terminated string, or NULL when the key is absent. */
static inline char *wasmtask_config(const char *key) {
	uint32_t klen = (uint32_t)strlen(key);
	int32_t n = wasmtask_v1_config_get(key, klen, NULL, 0); /* size probe */
	if (n < 0) return NULL;
	char *v = (char *)malloc((size_t)n + 1);
	if (!v) abort();
	if (wasmtask_v1_config_get(key, klen, v, (uint32_t)n) != n) {
		free(v);
		return NULL;
	}
	v[n] = 0;
	return v;
}

/* ---- Child tasks. ---- */

/* A child task spec (the task spec of docs/task-spec.md). Unset (NULL or 0)
 * fields are left out. Without id, the host derives one from this run and
 * the submission's ordinal, so a retried handler creates no duplicates. */
typedef struct wasmtask_child {
	const char *id;
	const char *handler; /* required: plugin name, optionally name@sha256:<hex> */
	const char *input;   /* UTF-8 text (input_len bytes, or up to the NUL when input_len is 0) */
	size_t input_len;
	const char *input_b64; /* or raw bytes, base64 */
	int max_attempts;
	const char *timeout; /* a Go duration, e.g. "30s" */
	int priority;
	const char *const *after; /* after_len task ids this child waits for */
	size_t after_len;
	const char *const *labels; /* labels_len key, value pairs: {"k1", "v1", "k2", "v2"} */
	size_t labels_len;
} wasmtask_child;

typedef struct wasmtask_buf_ {
	char *p;
	size_t len, cap;
} wasmtask_buf_;

static inline void wasmtask_buf_put_(wasmtask_buf_ *b, const char *s, size_t n) {
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 128;
		while (cap < b->len + n + 1) cap *= 2;
		b->p = (char *)realloc(b->p, cap);
		if (!b->p) abort();
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static inline void wasmtask_buf_str_(wasmtask_buf_ *b, const char *s) { wasmtask_buf_put_(b, s, strlen(s)); }

/* buf_json_ appends s as a JSON string, escaping quotes, backslashes and
 * control characters; other bytes are copied (UTF-8 expected). */
static inline void wasmtask_buf_json_(wasmtask_buf_ *b, const char *s, size_t n) {
	static const char hex[] = "0123456789abcdef";
	wasmtask_buf_put_(b, "\"", 1);
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\') continue;
		wasmtask_buf_put_(b, s + start, i - start);
		start = i + 1;
		char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
		size_t elen = 2;
		switch (c) {
		case '"': case '\\': break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			esc[1] = 'u'; esc[2] = '0'; esc[3] = '0'; esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
			elen = 6;
		}
		wasmtask_buf_put_(b, esc, elen);
	}
	wasmtask_buf_put_(b, s + start, n - start);
	wasmtask_buf_put_(b, "\"", 1);
}

static inline void wasmtask_buf_field_(wasmtask_buf_ *b, const char *name, const char *v) {
	if (!v) return;
	wasmtask_buf_str_(b, ",\"");
	wasmtask_buf_str_(b, name);
	wasmtask_buf_str_(b, "\":");
	wasmtask_buf_json_(b, v, strlen(v));
}

/* wasmtask_child_json returns c as a malloc'd JSON task spec. */
static inline char *wasmtask_child_json(const wasmtask_child *c) {
	wasmtask_buf_ b = {0};
	char num[24];
	wasmtask_buf_str_(&b, "{\"handler\":");
	wasmtask_buf_json_(&b, c->handler ? c->handler : "", c->handler ? strlen(c->handler) : 0);
	wasmtask_buf_field_(&b, "id", c->id);
	if (c->input) {
		wasmtask_buf_str_(&b, ",\"input\":");
		wasmtask_buf_json_(&b, c->input, c->input_len ? c->input_len : strlen(c->input));
	}
	wasmtask_buf_field_(&b, "input_b64", c->input_b64);
	if (c->max_attempts) {
		snprintf(num, sizeof num, ",\"max_attempts\":%d", c->max_attempts);
		wasmtask_buf_str_(&b, num);
	}
	wasmtask_buf_field_(&b, "timeout", c->timeout);
	if (c->priority) {
		snprintf(num, sizeof num, ",\"priority\":%d", c->priority);
		wasmtask_buf_str_(&b, num);
	}
	if (c->after_len) {
		wasmtask_buf_str_(&b, ",\"after\":[");
		for (size_t i = 0; i < c->after_len; i++) {
			if (i) wasmtask_buf_str_(&b, ",");
			wasmtask_buf_json_(&b, c->after[i], strlen(c->after[i]));
		}
		wasmtask_buf_str_(&b, "]");
	}
	if (c->labels_len) {
		wasmtask_buf_str_(&b, ",\"labels\":{");
		for (size_t i = 0; i + 1 < c->labels_len * 2; i += 2) {
			if (i) wasmtask_buf_str_(&b, ",");
			wasmtask_buf_json_(&b, c->labels[i], strlen(c->labels[i]));
			wasmtask_buf_str_(&b, ":");
			wasmtask_buf_json_(&b, c->labels[i + 1], strlen(c->labels[i + 1]));
		}
		wasmtask_buf_str_(&b, "}");
	}
	wasmtask_buf_str_(&b, "}");
	return b.p;
}

/* wasmtask_submit_json stages a child task given as a JSON task spec,
 * committed when this attempt succeeds. It writes the child's id,
 * NUL-terminated, to id (WASMTASK_ID_MAX bytes) and returns its length, or
 * WASMTASK_EINVAL (no handler), WASMTASK_EQUOTA (children limit) or
 * WASMTASK_ETOOLARGE (id does not fit). */
static inline int32_t wasmtask_submit_json(const char *spec, size_t len, char id[WASMTASK_ID_MAX]) {
	int32_t n = wasmtask_v1_submit(spec, (uint32_t)len, id, WASMTASK_ID_MAX - 1);
	if (n >= 0) id[n] = 0;
	return n;
}

/* wasmtask_submit stages a typed child spec; see wasmtask_submit_json. */
static inline int32_t wasmtask_submit(const wasmtask_child *c, char id[WASMTASK_ID_MAX]) {
	char *spec = wasmtask_child_json(c);
	int32_t n = wasmtask_submit_json(spec, strlen(spec), id);
	free(spec);
	return n;
}

/* ---- Liveness. ---- */

/* wasmtask_heartbeat reports progress (detail may be NULL) and extends the
 * lease; it returns 1 when the attempt should stop. */
static inline int wasmtask_heartbeat(const char *detail) {
	return wasmtask_v1_heartbeat(detail, detail ? (uint32_t)strlen(detail) : 0) == 1;
}

/* wasmtask_cancelled returns 1 when the attempt should stop (canceled, or
 * close to its deadline). */
static inline int wasmtask_cancelled(void) { return wasmtask_v1_cancelled() == 1; }

#ifdef __cplusplus
}
#endif
#endif /* WASMTASK_H */
