;; swap_v1: version 1 of the hot-swap plugin: spins 100,000 loop
;; iterations (about a millisecond, so attempts are running when v2 is
;; deployed) and outputs "v1".
;; Build: wat2wasm swap_v1.wat -o swap_v1.wasm (make wasm)
(module
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "v1")
  (func (export "wasmtask_handle") (result i32)
    (local $i i32)
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const 100000))))
    (drop (call $output_write (i32.const 16) (i32.const 2)))
    (i32.const 0)))
