;; output: writes its input three times and returns 0 whatever output_write
;; returned, so a small output limit must still end as output_too_large.
;; Build: wat2wasm output.wat -o output.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (result i32)
    (local $n i32)
    (local.set $n (call $input_read (i32.const 0) (i32.const 1024) (i32.const 4096)))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (i32.const 0)))
