;; logs: writes ten log lines, cycling through the levels -1 (debug), 0 (info),
;; 1 (warn) and 2 (error), then returns 0.
;; Build: wat2wasm logs.wat -o logs.wasm (make wasm)
(module
  (import "wasmtask_v1" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "a log line of thirty-two bytes!!")  ;; 32 bytes
  (func (export "wasmtask_handle") (result i32)
    (local $i i32)
    (loop $more
      (call $log (i32.sub (i32.rem_u (local.get $i) (i32.const 4)) (i32.const 1)) (i32.const 16) (i32.const 32))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 10))))
    (i32.const 0)))
