;; unknownmodule: imports env.now from a module the host does not provide.
;; Build: wat2wasm unknownmodule.wat -o unknownmodule.wasm (make wasm)
(module
  (import "env" "now" (func $now (result i64)))
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (result i32)
    (drop (call $now))
    (i32.const 0)))
