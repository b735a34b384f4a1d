;; mix: for the stress test; the first input byte picks the behaviour:
;; 'o' echo the input (ok), 't' unreachable (trap), 'l' loop forever
;; (timeout), 'g' grow memory until it fails, then trap (oom).
;; Build: wat2wasm mix.wat -o mix.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (result i32)
    (local $n i32) (local $c i32)
    (local.set $n (call $input_read (i32.const 0) (i32.const 1024) (i32.const 4096)))
    (local.set $c (i32.load8_u (i32.const 1024)))
    (if (i32.eq (local.get $c) (i32.const 116)) (then unreachable))            ;; 't'
    (if (i32.eq (local.get $c) (i32.const 108)) (then (loop $l (br $l))))     ;; 'l'
    (if (i32.eq (local.get $c) (i32.const 103))                               ;; 'g'
      (then
        (loop $more
          (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
        unreachable))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (i32.const 0)))
