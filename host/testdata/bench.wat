;; bench: the benchmark guest; a reactor whose _initialize sets a global,
;; and whose wasmtask_handle reads its whole input with one input_read
;; and writes it back with one output_write.
;; Build: wat2wasm bench.wat -o bench.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $ready (mut i32) (i32.const 0))
  (func (export "_initialize")
    (global.set $ready (i32.const 1)))
  (func (export "wasmtask_handle") (result i32)
    (local $n i32)
    (if (i32.eqz (global.get $ready)) (then unreachable))
    (local.set $n (call $input_read (i32.const 0) (i32.const 1024) (i32.const 4096)))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (i32.const 0)))
