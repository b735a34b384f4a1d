;; logfail: writes one info log line, then fails permanently: the dashboard
;; test reads both from a failed task's page.
;; Build: wat2wasm logfail.wat -o logfail.wasm (make wasm)
(module
  (import "wasmtask_v1" "log" (func $log (param i32 i32 i32)))
  (import "wasmtask_v1" "fail" (func $fail (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "checking the order total")   ;; 24 bytes
  (data (i32.const 64) "order total is negative")    ;; 23 bytes
  (func (export "wasmtask_handle") (result i32)
    (call $log (i32.const 0) (i32.const 16) (i32.const 24))
    (call $fail (i32.const 0) (i32.const 64) (i32.const 23))
    (i32.const 1)))
