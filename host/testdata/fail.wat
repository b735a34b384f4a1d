;; fail: the first input byte picks the failure: '0' fail(0) permanent,
;; '1' fail(1) retryable, '5' fail(5) (an invalid kind), anything else
;; returns 1 without calling fail.
;; Build: wat2wasm fail.wat -o fail.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "fail" (func $fail (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "permanent: bad input")  ;; 20 bytes
  (data (i32.const 48) "retryable: try again")  ;; 20 bytes
  (func (export "wasmtask_handle") (result i32)
    (local $c i32)
    (drop (call $input_read (i32.const 0) (i32.const 0) (i32.const 1)))
    (local.set $c (i32.load8_u (i32.const 0)))
    (if (i32.eq (local.get $c) (i32.const 48)) ;; '0'
      (then (call $fail (i32.const 0) (i32.const 16) (i32.const 20))))
    (if (i32.eq (local.get $c) (i32.const 49)) ;; '1'
      (then (call $fail (i32.const 1) (i32.const 48) (i32.const 20))))
    (if (i32.eq (local.get $c) (i32.const 53)) ;; '5'
      (then (call $fail (i32.const 5) (i32.const 48) (i32.const 20))))
    (i32.const 1)))
