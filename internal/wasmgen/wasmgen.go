// Package wasmgen writes synthetic WebAssembly modules for tests and
// benchmarks: modules as large as real toolchains emit (a yosys build is
// ~28 MB), generated at test time rather than committed.
package wasmgen

// Command returns a WASI command module of at least size bytes: _start
// writes "big\n" to stdout; about code bytes of functions of straight-line
// i32 arithmetic on locals follow, and a custom section (as debug information is in
// real builds) pads the module to size. The code is real: wazero compiles
// every function, 10-17 s for 20 MB of it on a shared 2-core machine (and
// ten times that under the race detector, hence the separate code size).
func Command(size, code int) []byte {
	wasm := commandCode(code)
	if pad := size - len(wasm); pad > 0 {
		const name = "wasmgen.padding"
		hdr := appendName(nil, name)
		n := max(0, pad-len(hdr)-1-len(u32(nil, uint32(pad))))
		wasm = section(wasm, 0, append(hdr, make([]byte, n)...))
	}
	return wasm
}

func commandCode(size int) []byte {
	const opsPerFunc = 5000    // long bodies: compile time grows faster than decode time
	body := []byte{0, 0x20, 0} // no locals; local.get 0
	for i := 0; i < opsPerFunc; i++ {
		body = append(body, 0x41, byte(i*7+1)&0x3f, 0x6a) // i32.const k; i32.add
		body = append(body, 0x41, 3, 0x73)                // i32.const 3; i32.xor
	}
	body = append(body, 0x0b)
	funcs := size/len(body) + 1

	out := []byte("\x00asm\x01\x00\x00\x00")
	// types: 0 (i32) -> i32; 1 () -> (); 2 (i32 i32 i32 i32) -> i32
	out = section(out, 1, []byte{3, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 0, 0, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f})
	imp := []byte{1}
	imp = appendName(imp, "wasi_snapshot_preview1")
	imp = appendName(imp, "fd_write")
	imp = append(imp, 0, 2)
	out = section(out, 2, imp)
	fs := u32(nil, uint32(funcs+1))
	fs = append(fs, 1) // _start
	for i := 0; i < funcs; i++ {
		fs = append(fs, 0)
	}
	out = section(out, 3, fs)
	out = section(out, 5, []byte{1, 0, 1})
	ex := []byte{2}
	ex = appendName(ex, "memory")
	ex = append(ex, 2, 0)
	ex = appendName(ex, "_start")
	ex = append(ex, 0, 1) // function 1: the first defined one
	out = section(out, 7, ex)
	// _start: iovec at 0 = {ptr 16, len 4}; "big\n" at 16; fd_write(1, 0, 1, 8)
	start := []byte{0,
		0x41, 0, 0x41, 16, 0x36, 2, 0, // i32.store (0) = 16
		0x41, 4, 0x41, 4, 0x36, 2, 0, // i32.store (4) = 4
		0x41, 16, 0x41, 0xe2, 0xd2, 0x9d, 0xd3, 0x00, 0x36, 2, 0, // i32.store (16) = "big\n"
		0x41, 1, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0, 0x1a, // drop(fd_write(1, 0, 1, 8))
		0x0b}
	code := u32(nil, uint32(funcs+1))
	code = u32(code, uint32(len(start)))
	code = append(code, start...)
	for i := 0; i < funcs; i++ {
		code = u32(code, uint32(len(body)))
		code = append(code, body...)
	}
	return section(out, 10, code)
}

func section(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = u32(out, uint32(len(body)))
	return append(out, body...)
}

func appendName(b []byte, s string) []byte { return append(u32(b, uint32(len(s))), s...) }

func u32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
