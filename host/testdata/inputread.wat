;; inputread: outputs, as i32 LE, input_len(), input_read at offset len
;; (0: the end), at len+1 (-1: past the end), and with limit 0 (0).
;; Build: wat2wasm inputread.wat -o inputread.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_len" (func $input_len (result i32)))
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $out32 (param $v i32)
    (i32.store (i32.const 60000) (local.get $v))
    (drop (call $output_write (i32.const 60000) (i32.const 4))))
  (func (export "wasmtask_handle") (result i32)
    (local $len i32)
    (local.set $len (call $input_len))
    (call $out32 (local.get $len))
    (call $out32 (call $input_read (local.get $len) (i32.const 1024) (i32.const 16)))
    (call $out32 (call $input_read (i32.add (local.get $len) (i32.const 1)) (i32.const 1024) (i32.const 16)))
    (call $out32 (call $input_read (i32.const 0) (i32.const 1024) (i32.const 0)))
    (i32.const 0)))
