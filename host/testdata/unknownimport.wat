;; unknownimport: imports wasmtask_v1.fetch, which the host does not provide.
;; Build: wat2wasm unknownimport.wat -o unknownimport.wasm (make wasm)
(module
  (import "wasmtask_v1" "fetch" (func $fetch (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (result i32)
    (call $fetch (i32.const 0) (i32.const 0))))
