;; slowinfo: busy-waits 200 ms on the monotonic clock (WASI clock_time_get),
;; then outputs its task_info JSON (task, run, attempt...): an attempt long
;; enough to be caught mid-run, whose output says which attempt made it.
;; Build: wat2wasm slowinfo.wat -o slowinfo.wasm (make wasm)
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
  (import "wasmtask_v1" "task_info" (func $task_info (param i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $mono (result i64)
    (drop (call $now (i32.const 1) (i64.const 1) (i32.const 0)))
    (i64.load (i32.const 0)))
  (func (export "wasmtask_handle") (result i32)
    (local $end i64)
    (local $n i32)
    (local.set $end (i64.add (call $mono) (i64.const 200000000)))
    (loop $spin
      (br_if $spin (i64.lt_u (call $mono) (local.get $end))))
    (local.set $n (call $task_info (i32.const 1024) (i32.const 60000)))
    (if (i32.le_s (local.get $n) (i32.const 0)) (then (return (i32.const 1))))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (i32.const 0)))
