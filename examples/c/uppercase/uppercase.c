// uppercase: returns its input with ASCII letters upper-cased (other bytes,
// UTF-8 included, pass through unchanged). The input "!fail" fails the
// attempt permanently, to show a failure that is not retried.
#include "wasmtask.h"

static int upper(void) {
	size_t n;
	const uint8_t *in = wasmtask_input(&n);
	wasmtask_logf(WASMTASK_INFO, "upper-casing %zu bytes", n);
	if (n == 5 && memcmp(in, "!fail", 5) == 0)
		return wasmtask_fail(WASMTASK_PERMANENT, "the input asked to fail");
	uint8_t *out = malloc(n + 1);
	if (!out) abort();
	for (size_t i = 0; i < n; i++)
		out[i] = in[i] >= 'a' && in[i] <= 'z' ? in[i] - ('a' - 'A') : in[i];
	if (wasmtask_output(out, n) < 0)
		return wasmtask_fail(WASMTASK_PERMANENT, "output too large");
	return WASMTASK_OK;
}

WASMTASK_HANDLER(upper)
