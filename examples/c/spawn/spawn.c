// spawn: submits one child task (handler "uppercase", the same input) and
// outputs the child's id. The child is staged: it is created only when this
// attempt succeeds.
#include "wasmtask.h"

static int spawn(void) {
	size_t n;
	const char *in = (const char *)wasmtask_input(&n);
	wasmtask_child child = {.handler = "uppercase", .input = in, .input_len = n};
	if (n == 0) child.input = ""; /* input_len 0 means "up to the NUL" */
	char id[WASMTASK_ID_MAX];
	int32_t r = wasmtask_submit(&child, id);
	if (r < 0) return wasmtask_failf(WASMTASK_PERMANENT, "submit: error %d", r);
	wasmtask_logf(WASMTASK_INFO, "submitted child %s", id);
	return wasmtask_output_str(id) < 0 ? WASMTASK_FAILED : WASMTASK_OK;
}

WASMTASK_HANDLER(spawn)
