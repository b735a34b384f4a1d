;; An Extism plugin that breaks the ABI: store_u8 far outside the kernel
;; memory (an abi_violation), and output_set of a range never allocated.
(module
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (memory (export "memory") 1)
  (func (export "store_far") (result i32)
    (call $store_u8 (i64.const 1099511627776) (i32.const 1))
    (i32.const 0))
  (func (export "output_unallocated") (result i32)
    (call $output_set (i64.const 4096) (i64.const 10))
    (i32.const 0)))
