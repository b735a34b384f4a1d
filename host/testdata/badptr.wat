;; badptr: the first input byte picks an import to call with a pointer
;; outside the module's 1-page memory (0x7ffffff0), so the attempt must end as
;; abi_violation naming that import:
;;   a input_read buf        f config_get key_ptr   k output_write len overflow
;;   b output_write ptr      g config_get buf       l log len overflow
;;   c fail ptr              h submit spec_ptr
;;   d log ptr               i submit id_buf
;;   e task_info buf         j heartbeat ptr
;; The config key "k" must be present for g. Any other byte returns 0.
;; Build: wat2wasm badptr.wat -o badptr.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (import "wasmtask_v1" "fail" (func $fail (param i32 i32 i32)))
  (import "wasmtask_v1" "log" (func $log (param i32 i32 i32)))
  (import "wasmtask_v1" "task_info" (func $task_info (param i32 i32) (result i32)))
  (import "wasmtask_v1" "config_get" (func $config_get (param i32 i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "submit" (func $submit (param i32 i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "heartbeat" (func $heartbeat (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $bad i32 (i32.const 0x7ffffff0))
  (data (i32.const 16) "k")
  (data (i32.const 32) "{\"handler\":\"child\"}")  ;; 19 bytes
  (func (export "wasmtask_handle") (result i32)
    (drop (call $input_read (i32.const 0) (i32.const 0) (i32.const 1)))
    (block $done
      (block $l (block $k (block $j (block $i (block $h (block $g (block $f (block $e (block $d (block $c (block $b (block $a
        (br_table $a $b $c $d $e $f $g $h $i $j $k $l $done
          (i32.sub (i32.load8_u (i32.const 0)) (i32.const 97))))
        ;; a
        (drop (call $input_read (i32.const 0) (global.get $bad) (i32.const 16)))
        (br $done))
        ;; b
        (drop (call $output_write (global.get $bad) (i32.const 4)))
        (br $done))
        ;; c
        (call $fail (i32.const 1) (global.get $bad) (i32.const 4))
        (br $done))
        ;; d
        (call $log (i32.const 0) (global.get $bad) (i32.const 4))
        (br $done))
        ;; e
        (drop (call $task_info (global.get $bad) (i32.const 65536)))
        (br $done))
        ;; f
        (drop (call $config_get (global.get $bad) (i32.const 1) (i32.const 1024) (i32.const 64)))
        (br $done))
        ;; g
        (drop (call $config_get (i32.const 16) (i32.const 1) (global.get $bad) (i32.const 64)))
        (br $done))
        ;; h
        (drop (call $submit (global.get $bad) (i32.const 19) (i32.const 1024) (i32.const 64)))
        (br $done))
        ;; i
        (drop (call $submit (i32.const 32) (i32.const 19) (global.get $bad) (i32.const 64)))
        (br $done))
        ;; j
        (drop (call $heartbeat (global.get $bad) (i32.const 4)))
        (br $done))
        ;; k
        (drop (call $output_write (i32.const 16) (i32.const -1)))
        (br $done))
        ;; l
        (call $log (i32.const 0) (i32.const 65000) (i32.const 1000))
        (br $done))
    (i32.const 0)))
