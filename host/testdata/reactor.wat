;; reactor: a WASI reactor; _initialize sets a global to 42 and
;; wasmtask_handle outputs it (i32 LE), so the output proves _initialize ran
;; first.
;; Build: wat2wasm reactor.wat -o reactor.wasm (make wasm)
(module
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $ready (mut i32) (i32.const 0))
  (func (export "_initialize")
    (global.set $ready (i32.const 42)))
  (func (export "wasmtask_handle") (result i32)
    (i32.store (i32.const 0) (global.get $ready))
    (drop (call $output_write (i32.const 0) (i32.const 4)))
    (i32.const 0)))
