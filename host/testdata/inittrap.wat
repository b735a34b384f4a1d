;; inittrap: a reactor without globals whose _initialize traps when the
;; input is 1 byte long, and whose wasmtask_handle traps when it is 2
;; bytes long; otherwise it outputs "ok". It shows which of the two a
;; trap came from (entry.go runs both in one call).
;; Build: wat2wasm inittrap.wat -o inittrap.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_len" (func $input_len (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "ok")
  (func (export "_initialize")
    (if (i32.eq (call $input_len) (i32.const 1)) (then unreachable)))
  (func (export "wasmtask_handle") (result i32)
    (if (i32.eq (call $input_len) (i32.const 2)) (then unreachable))
    (drop (call $output_write (i32.const 0) (i32.const 2)))
    (i32.const 0)))
