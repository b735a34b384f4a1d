//go:build wasip1

package wasmtask

import "unsafe"

// The imports of wasmtask_v1 (sdk/ABI.md), one to one.

//go:wasmimport wasmtask_v1 input_len
func inputLen() int32

//go:wasmimport wasmtask_v1 input_read
func inputRead(offset uint32, buf unsafe.Pointer, limit uint32) int32

//go:wasmimport wasmtask_v1 output_write
func outputWrite(ptr unsafe.Pointer, n uint32) int32

//go:wasmimport wasmtask_v1 fail
func fail(kind int32, ptr unsafe.Pointer, n uint32)

//go:wasmimport wasmtask_v1 log
func logLine(level int32, ptr unsafe.Pointer, n uint32)

//go:wasmimport wasmtask_v1 task_info
func taskInfo(buf unsafe.Pointer, limit uint32) int32

//go:wasmimport wasmtask_v1 config_get
func configGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, limit uint32) int32

//go:wasmimport wasmtask_v1 submit
func submit(spec unsafe.Pointer, specLen uint32, idBuf unsafe.Pointer, idLimit uint32) int32

//go:wasmimport wasmtask_v1 heartbeat
func heartbeat(ptr unsafe.Pointer, n uint32) int32

//go:wasmimport wasmtask_v1 cancelled
func cancelled() int32

//go:wasmexport wasmtask_handle
func wasmtaskHandle() int32 { return run() }

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

type wasmHost struct{}

func (wasmHost) inputLen() int32 { return inputLen() }
func (wasmHost) inputRead(off uint32, buf []byte) int32 {
	return inputRead(off, ptr(buf), uint32(len(buf)))
}
func (wasmHost) outputWrite(b []byte) int32  { return outputWrite(ptr(b), uint32(len(b))) }
func (wasmHost) fail(kind int32, msg []byte) { fail(kind, ptr(msg), uint32(len(msg))) }
func (wasmHost) log(level int32, msg []byte) { logLine(level, ptr(msg), uint32(len(msg))) }
func (wasmHost) taskInfo(buf []byte) int32   { return taskInfo(ptr(buf), uint32(len(buf))) }
func (wasmHost) configGet(key, buf []byte) int32 {
	return configGet(ptr(key), uint32(len(key)), ptr(buf), uint32(len(buf)))
}
func (wasmHost) submit(spec, idBuf []byte) int32 {
	return submit(ptr(spec), uint32(len(spec)), ptr(idBuf), uint32(len(idBuf)))
}
func (wasmHost) heartbeat(detail []byte) int32 { return heartbeat(ptr(detail), uint32(len(detail))) }
func (wasmHost) cancelled() int32              { return cancelled() }

func init() { abi = wasmHost{} }
