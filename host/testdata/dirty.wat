;; dirty: grows its memory from 1 to 4 pages one page at a time (wasmtask's
;; allocator reserves 1, 2, then 4 pages: the last grow stays within the
;; capacity). With input "dirty" it fills all of its memory with 0xff
;; before and after each grow; otherwise it outputs, as i32 LE, how many
;; bytes of its memory are not zero at the end (0 for a fresh instance,
;; whatever instance used the buffers before).
;; Build: wat2wasm dirty.wat -o dirty.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_len" (func $input_len (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $dirty (mut i32) (i32.const 0))
  (func $fill
    (local $i i32)
    (local $end i32)
    (if (i32.eqz (global.get $dirty)) (then return))
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (loop $next
      (i32.store8 (local.get $i) (i32.const 0xff))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (local.get $end)))))
  (func (export "wasmtask_handle") (result i32)
    (local $i i32)
    (local $end i32)
    (local $count i32)
    (global.set $dirty (i32.eq (call $input_len) (i32.const 5)))
    (call $fill)
    (drop (memory.grow (i32.const 1)))
    (call $fill)
    (drop (memory.grow (i32.const 1)))
    (call $fill)
    (drop (memory.grow (i32.const 1)))
    (call $fill)
    (if (global.get $dirty) (then (return (i32.const 0))))
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (loop $scan
      (if (i32.load8_u (local.get $i))
        (then (local.set $count (i32.add (local.get $count) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $scan (i32.lt_u (local.get $i) (local.get $end))))
    (i32.store (i32.const 0) (local.get $count))
    (drop (call $output_write (i32.const 0) (i32.const 4)))
    (i32.const 0)))
