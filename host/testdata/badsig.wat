;; badsig: imports wasmtask_v1.output_write with one parameter instead of two.
;; Build: wat2wasm badsig.wat -o badsig.wasm (make wasm)
(module
  (import "wasmtask_v1" "output_write" (func $output_write (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (result i32)
    (call $output_write (i32.const 0))))
