package machine

import (
	"testing"
	"unsafe"
)

// TestTaskSize: a server retains up to RetainCount tasks (100k by
// default), most of its heap, and allocates a Task for every submission;
// an engine taking on tasks pays for every new page of heap. Task fits in
// the allocator's 768-byte size class (it took the 1 KiB one with the
// workflow links inline, the 896-byte one with the rarely set fields
// inline): a field added to it should be rare or go behind a pointer
// (taskLinks, TaskMore).
func TestTaskSize(t *testing.T) {
	if size := unsafe.Sizeof(Task{}); size > 768 {
		t.Errorf("machine.Task is %d bytes, over the 768-byte size class: move rarely used fields behind a pointer", size)
	}
}
