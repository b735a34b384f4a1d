;; spin: busy-waits 30 ms on the monotonic clock (WASI clock_time_get),
;; then returns 0: an attempt of a known length.
;; Build: wat2wasm spin.wat -o spin.wasm (make wasm)
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func $mono (result i64)
    (drop (call $now (i32.const 1) (i64.const 1) (i32.const 0)))
    (i64.load (i32.const 0)))
  (func (export "wasmtask_handle") (result i32)
    (local $end i64)
    (local.set $end (i64.add (call $mono) (i64.const 30000000)))
    (loop $spin
      (br_if $spin (i64.lt_u (call $mono) (local.get $end))))
    (i32.const 0)))
