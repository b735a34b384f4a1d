;; nomemory: a handler with a memory it does not export.
;; Build: wat2wasm nomemory.wat -o nomemory.wasm (make wasm)
(module
  (memory 1)
  (func (export "wasmtask_handle") (result i32)
    (i32.const 0)))
