;; An Extism plugin written by hand against the Extism host ABI
;; (extism:host/env), with no PDK: what every PDK compiles down to.
;;
;;   count_vowels  input text -> {"count": N}; logs one info line
;;   fail          sets an error with error_set and returns 1
;;   spin          never returns (a timeout)
;;
;; Build: wat2wasm count_vowels.wat -o count_vowels.wasm
;; (scripts/build-extism-plugins.sh regenerates host/testdata/extism/).
(module
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "error_set" (func $error_set (param i64)))
  (import "extism:host/env" "log_info" (func $log_info (param i64)))

  (memory (export "memory") 1)
  (data (i32.const 0) "{\"count\": ")          ;; 10 bytes
  (data (i32.const 16) "aeiouAEIOU")           ;; 10 bytes
  (data (i32.const 32) "input must not be empty") ;; 23 bytes
  (data (i32.const 64) "counting vowels")      ;; 15 bytes

  ;; put copies [p, p+n) of this module's memory into a new kernel block.
  (func $put (param $p i32) (param $n i32) (result i64)
    (local $off i64) (local $i i32)
    (local.set $off (call $alloc (i64.extend_i32_u (local.get $n))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (call $store_u8
          (i64.add (local.get $off) (i64.extend_i32_u (local.get $i)))
          (i32.load8_u (i32.add (local.get $p) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $off))

  ;; is_vowel: the byte is one of the 10 at offset 16.
  (func $is_vowel (param $c i32) (result i32)
    (local $i i32)
    (block $no
      (loop $next
        (br_if $no (i32.ge_u (local.get $i) (i32.const 10)))
        (if (i32.eq (local.get $c) (i32.load8_u (i32.add (i32.const 16) (local.get $i))))
          (then (return (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  (func (export "count_vowels") (result i32)
    (local $n i64) (local $i i64) (local $count i32) (local $end i32) (local $start i32)
    (call $log_info (call $put (i32.const 64) (i32.const 15)))
    (local.set $n (call $input_length))
    (block $done
      (loop $next
        (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
        (local.set $count (i32.add (local.get $count)
          (call $is_vowel (call $input_load_u8 (local.get $i)))))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $next)))
    ;; {"count": <digits>} built at 128: prefix, digits (written backwards
    ;; at 160..150), then moved next to the prefix.
    (memory.copy (i32.const 128) (i32.const 0) (i32.const 10))
    (local.set $end (i32.const 160))
    (local.set $start (i32.const 160))
    (loop $digit
      (local.set $start (i32.sub (local.get $start) (i32.const 1)))
      (i32.store8 (local.get $start)
        (i32.add (i32.const 48) (i32.rem_u (local.get $count) (i32.const 10))))
      (local.set $count (i32.div_u (local.get $count) (i32.const 10)))
      (br_if $digit (i32.ne (local.get $count) (i32.const 0))))
    (memory.copy (i32.const 138) (local.get $start) (i32.sub (local.get $end) (local.get $start)))
    (local.set $end (i32.add (i32.const 138) (i32.sub (local.get $end) (local.get $start))))
    (i32.store8 (local.get $end) (i32.const 125)) ;; '}'
    (local.set $end (i32.add (local.get $end) (i32.const 1)))
    (call $output_set
      (call $put (i32.const 128) (i32.sub (local.get $end) (i32.const 128)))
      (i64.extend_i32_u (i32.sub (local.get $end) (i32.const 128))))
    (i32.const 0))

  (func (export "fail") (result i32)
    (call $error_set (call $put (i32.const 32) (i32.const 23)))
    (i32.const 1))

  (func (export "spin") (result i32)
    (loop $forever (br $forever))
    (i32.const 0)))
