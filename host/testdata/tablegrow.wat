;; tablegrow: reads an i32 n (LE) from its input, then outputs, as i32 LE,
;; table.grow by n (the old size, or -1 when refused), and table.size.
;; Its table starts at 10 elements and declares no maximum.
;; Build: wat2wasm tablegrow.wat -o tablegrow.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table $t 10 funcref)
  (func $out32 (param $v i32)
    (i32.store (i32.const 60000) (local.get $v))
    (drop (call $output_write (i32.const 60000) (i32.const 4))))
  (func (export "wasmtask_handle") (result i32)
    (drop (call $input_read (i32.const 0) (i32.const 1024) (i32.const 4)))
    (call $out32 (table.grow $t (ref.null func) (i32.load (i32.const 1024))))
    (call $out32 (table.size $t))
    (i32.const 0)))
