;; trap: wasmtask_handle calls a function that executes unreachable.
;; Build: wat2wasm trap.wat -o trap.wasm (make wasm)
(module
  (memory (export "memory") 1)
  (func $boom
    unreachable)
  (func (export "wasmtask_handle") (result i32)
    (call $boom)
    (i32.const 0)))
