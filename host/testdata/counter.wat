;; counter: the reuse-policy guest. A global counts the attempts this
;; instance ran, and so does an i32 in memory (at byte 64); each attempt
;; writes both (two i32, little-endian) as output, so a test sees whether
;; the instance was reused (2, 3, ...) or fresh or reset (1), and that
;; globals and memory were kept or restored together. The
;; first input byte picks what the attempt does after counting:
;;   (none) ok     f fail (returns 1)       t trap       l loop forever
;;   g grow until memory.grow fails, then trap (oom)     m grow 4 pages, ok
;;   s spin through 2000 host calls, ok     p print "hi\n" to WASI stdout, ok
;; A second global marks the instance busy while an attempt runs: an
;; attempt that finds it set traps, so two attempts sharing one instance at
;; the same time cannot go unnoticed.
;; Build: wat2wasm counter.wat -o counter.wasm (make wasm)
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "input_len" (func $input_len (result i32)))
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $count (mut i32) (i32.const 0))
  (global $busy (mut i32) (i32.const 0))
  (data (i32.const 32) "hi\n")
  (func (export "wasmtask_handle") (result i32)
    (local $op i32) (local $i i32)
    (if (global.get $busy) (then unreachable))
    (global.set $busy (i32.const 1))
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (i32.store (i32.const 64) (i32.add (i32.load (i32.const 64)) (i32.const 1)))
    (i32.store (i32.const 0) (global.get $count))
    (i32.store (i32.const 4) (i32.load (i32.const 64)))
    (drop (call $output_write (i32.const 0) (i32.const 8)))
    (i32.store8 (i32.const 8) (i32.const 0))
    (drop (call $input_read (i32.const 0) (i32.const 8) (i32.const 1)))
    (local.set $op (i32.load8_u (i32.const 8)))
    (if (i32.eq (local.get $op) (i32.const 0x74)) (then unreachable)) ;; t
    (if (i32.eq (local.get $op) (i32.const 0x6c)) ;; l
      (then (loop $forever (br $forever))))
    (if (i32.eq (local.get $op) (i32.const 0x67)) ;; g
      (then
        (loop $more
          (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
        unreachable))
    (if (i32.eq (local.get $op) (i32.const 0x6d)) ;; m
      (then (drop (memory.grow (i32.const 4)))))
    (if (i32.eq (local.get $op) (i32.const 0x73)) ;; s
      (then
        (loop $spin
          (drop (call $input_len))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $spin (i32.lt_u (local.get $i) (i32.const 2000))))))
    (if (i32.eq (local.get $op) (i32.const 0x70)) ;; p
      (then
        (i32.store (i32.const 16) (i32.const 32))
        (i32.store (i32.const 20) (i32.const 3))
        (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))
    (global.set $busy (i32.const 0))
    (if (i32.eq (local.get $op) (i32.const 0x66)) (then (return (i32.const 1)))) ;; f
    (i32.const 0)))
