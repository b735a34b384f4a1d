// retry: fails retryably until the attempt named by the plugin config
// "succeed_on" (default 3), then outputs "succeeded on attempt N".
#include "wasmtask.h"

static int flaky(void) {
	long succeed_on = 3;
	char *v = wasmtask_config("succeed_on");
	if (v) {
		char *end;
		long n = strtol(v, &end, 10);
		if (*v && !*end) succeed_on = n;
	}
	const wasmtask_info *info = wasmtask_task_info();
	if (info->attempt < succeed_on) {
		wasmtask_logf(WASMTASK_INFO, "attempt %lld of %lld: failing on purpose",
		              (long long)info->attempt, (long long)info->max_attempts);
		return wasmtask_failf(WASMTASK_RETRYABLE, "transient failure on attempt %lld (succeeds on attempt %ld)",
		                      (long long)info->attempt, succeed_on);
	}
	return wasmtask_outputf("succeeded on attempt %lld", (long long)info->attempt) < 0 ? WASMTASK_FAILED : WASMTASK_OK;
}

WASMTASK_HANDLER(flaky)
