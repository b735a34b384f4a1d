// uppercase: returns its input with ASCII letters upper-cased (other bytes,
// UTF-8 included, pass through unchanged). The input "!fail" fails the
// attempt permanently, to show a failure that is not retried.
import { Task, Failure, Level, run } from "../../../sdk/assemblyscript/assembly/index";

export function wasmtask_handle(): i32 {
  return run(upper);
}

function upper(t: Task): Failure | null {
  const input = t.input();
  t.log(Level.Info, "upper-casing " + input.length.toString() + " bytes");
  if (input.length == 5 && t.inputString() == "!fail") return Failure.permanent("the input asked to fail");
  const out = new Uint8Array(input.length);
  for (let i = 0; i < input.length; i++) {
    const c = input[i];
    out[i] = c >= 0x61 && c <= 0x7a ? c - 0x20 : c;
  }
  return t.output(out);
}
