// spawn: submits one child task (handler "uppercase", the same input) and
// outputs the child's id. The child is staged: it is created only when this
// attempt succeeds.
import { Task, Failure, Level, ChildSpec, run } from "../../../sdk/assemblyscript/assembly/index";

export function wasmtask_handle(): i32 {
  return run(spawn);
}

function spawn(t: Task): Failure | null {
  const f = t.submit(new ChildSpec("uppercase", t.inputString()));
  if (f !== null) return f;
  t.log(Level.Info, "submitted child " + t.lastChildId);
  return t.outputString(t.lastChildId);
}
