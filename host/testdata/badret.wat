;; badret: wasmtask_handle returns 7, which the ABI does not define.
;; Build: wat2wasm badret.wat -o badret.wasm (make wasm)
(module
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (result i32)
    (i32.const 7)))
