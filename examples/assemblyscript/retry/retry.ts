// retry: fails retryably until the attempt named by the plugin config
// "succeed_on" (default 3), then outputs "succeeded on attempt N".
import { Task, Failure, Level, run } from "../../../sdk/assemblyscript/assembly/index";

export function wasmtask_handle(): i32 {
  return run(flaky);
}

function flaky(t: Task): Failure | null {
  let succeedOn: i64 = 3;
  const v = t.config("succeed_on");
  if (v !== null && v.length > 0) {
    const n = I64.parseInt(v, 10);
    if (n.toString() == v) succeedOn = n;
  }
  const info = t.info();
  if (info.attempt < succeedOn) {
    t.log(Level.Info, "attempt " + info.attempt.toString() + " of " + info.max_attempts.toString() + ": failing on purpose");
    return Failure.retryable(
      "transient failure on attempt " + info.attempt.toString() + " (succeeds on attempt " + succeedOn.toString() + ")",
    );
  }
  return t.outputString("succeeded on attempt " + info.attempt.toString());
}
