;; config: the input is a config key. Outputs the probe result (i32 LE) and,
;; when the key is present, the value read with exactly the probed limit.
;; Build: wat2wasm config.wat -o config.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "config_get" (func $config_get (param i32 i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $out32 (param $v i32)
    (i32.store (i32.const 60000) (local.get $v))
    (drop (call $output_write (i32.const 60000) (i32.const 4))))
  (func (export "wasmtask_handle") (result i32)
    (local $klen i32) (local $n i32)
    (local.set $klen (call $input_read (i32.const 0) (i32.const 0) (i32.const 256)))
    ;; size probe with limit 0
    (local.set $n (call $config_get (i32.const 0) (local.get $klen) (i32.const 1024) (i32.const 0)))
    (call $out32 (local.get $n))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.const 0))))
    (if (i32.ne (call $config_get (i32.const 0) (local.get $klen) (i32.const 1024) (local.get $n)) (local.get $n))
      (then (return (i32.const 1))))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (i32.const 0)))
