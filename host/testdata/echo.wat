;; echo: upper-cases its input, reading it in 5-byte chunks.
;; Build: wat2wasm echo.wat -o echo.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (result i32)
    (local $off i32) (local $n i32) (local $i i32) (local $c i32)
    (block $done
      (loop $chunk
        (local.set $n (call $input_read (local.get $off) (i32.const 1024) (i32.const 5)))
        (br_if $done (i32.le_s (local.get $n) (i32.const 0)))
        (local.set $i (i32.const 0))
        (block $up_done
          (loop $up
            (br_if $up_done (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $c (i32.load8_u (i32.add (i32.const 1024) (local.get $i))))
            (if (i32.and (i32.ge_u (local.get $c) (i32.const 97)) (i32.le_u (local.get $c) (i32.const 122)))
              (then (i32.store8 (i32.add (i32.const 1024) (local.get $i)) (i32.sub (local.get $c) (i32.const 32)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $up)))
        (drop (call $output_write (i32.const 1024) (local.get $n)))
        (local.set $off (i32.add (local.get $off) (local.get $n)))
        (br $chunk)))
    (i32.const 0)))
