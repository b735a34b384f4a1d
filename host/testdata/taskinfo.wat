;; taskinfo: probes task_info with limit 0, checks that a limit one byte short
;; writes nothing, then reads the JSON into memory and outputs it.
;; Build: wat2wasm taskinfo.wat -o taskinfo.wasm (make wasm)
(module
  (import "wasmtask_v1" "task_info" (func $task_info (param i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (result i32)
    (local $n i32)
    ;; size probe: limit 0 writes nothing and returns the full length
    (local.set $n (call $task_info (i32.const 1024) (i32.const 0)))
    (if (i32.le_s (local.get $n) (i32.const 0)) (then (return (i32.const 1))))
    (if (i32.ne (i32.load8_u (i32.const 1024)) (i32.const 0)) (then (return (i32.const 1))))
    ;; fits or nothing: one byte short writes nothing
    (if (i32.ne (call $task_info (i32.const 1024) (i32.sub (local.get $n) (i32.const 1))) (local.get $n))
      (then (return (i32.const 1))))
    (if (i32.ne (i32.load8_u (i32.const 1024)) (i32.const 0)) (then (return (i32.const 1))))
    ;; the read after the probe fits
    (if (i32.ne (call $task_info (i32.const 1024) (local.get $n)) (local.get $n))
      (then (return (i32.const 1))))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (i32.const 0)))
