;; importmemory: imports its memory instead of defining it.
;; Build: wat2wasm importmemory.wat -o importmemory.wasm (make wasm)
(module
  (import "env" "memory" (memory 1))
  (export "memory" (memory 0))
  (func (export "wasmtask_handle") (result i32)
    (i32.const 0)))
