package dispatch

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/wasmtask/wasmtask/dispatch/machine"
	"github.com/wasmtask/wasmtask/dispatch/payload"
)

// BusyError refuses a submission whose payload does not fit in the memory
// budget (Config.MaxPayloadMemory) right now. Nothing was written; the
// client retries after RetryAfter.
type BusyError struct {
	Need, Used, Max int64
}

// RetryAfterSeconds is the wait a BusyError suggests: the budget is held by
// requests and attempts in flight, which last about that long.
const RetryAfterSeconds = 1

func (e *BusyError) Error() string {
	return fmt.Sprintf("the server holds %d of its %d bytes of payload memory (--max-payload-memory) for work in progress and this submission needs %d more; retry in %ds, or raise --max-payload-memory",
		e.Used, e.Max, e.Need, RetryAfterSeconds)
}

// AdmitPayload reserves n bytes of payload memory for a submission being
// received (its body and the input decoded from it) until release is
// called. It never waits: when the bytes do not fit it returns a
// *BusyError (a submission alone larger than the whole budget is admitted
// while nothing else is held).
func (e *Engine) AdmitPayload(n int64) (release func(), err error) {
	if used, ok := e.budget.TryAcquire(n); !ok {
		e.throttled.Add(1)
		return nil, &BusyError{Need: n, Used: used, Max: e.budget.Max()}
	}
	return func() { e.budget.Release(n) }, nil
}

// PayloadStats are the payload counters for status and metrics.
type PayloadStats struct {
	MemoryUsed, MemoryPeak, MemoryMax int64  // payload bytes held in memory for work in progress
	StoreFiles, StoreBytes            int64  // what the payload store holds on disk
	InlineBytes                       int64  // inline payloads the state holds (estimate; recounted at each snapshot)
	Throttled                         uint64 // submissions refused by AdmitPayload
}

// PayloadStats returns the payload counters.
func (e *Engine) PayloadStats() PayloadStats {
	files, bytes := e.payloads.Usage()
	return PayloadStats{MemoryUsed: e.budget.Used(), MemoryPeak: e.budget.Peak(), MemoryMax: e.budget.Max(),
		StoreFiles: files, StoreBytes: bytes, Throttled: e.throttled.Load(), InlineBytes: e.inlineHeld.Load()}
}

// spill moves spec's input to the payload store when it is larger than
// Config.InlinePayloadBytes, so that neither the WAL record nor the state
// holds it. It returns the reference, pinned until the loop has handled
// the submission (unpinHandled), or "" when the input stays inline. The
// file is durable before spill returns, so before any WAL frame names it.
// An input the client named by input_ref is pinned here too, by this
// submission: unpinHandled releases one pin per InputRef, and must release
// this submission's own, never the pin of a concurrent Put of the same
// bytes (whose file a sweep could then remove before its submission
// reaches the state).
func (e *Engine) spill(spec *TaskSpec) (string, error) {
	if spec.InputRef != "" {
		e.payloads.Pin(spec.InputRef)
		return spec.InputRef, nil
	}
	if e.keepInline(len(spec.Input)) {
		return "", nil
	}
	ref, err := e.payloads.Put(spec.Input)
	return e.spilled(spec, ref, err)
}

// spillMany is spill for the specs of one batch: the inputs that do not
// stay inline are stored together (payload.Store.PutMany: one fsync per
// file and one per directory, not two per input one after the other),
// every file durable before spillMany returns. errs[i] is specs[i]'s.
func (e *Engine) spillMany(specs []*TaskSpec) (errs []error) {
	errs = make([]error, len(specs))
	var inputs [][]byte
	var which []int // inputs[k] is specs[which[k]]'s
	for i, spec := range specs {
		if spec.InputRef != "" {
			e.payloads.Pin(spec.InputRef) // as spill does
			continue
		}
		if !e.keepInline(len(spec.Input)) {
			inputs = append(inputs, spec.Input)
			which = append(which, i)
		}
	}
	if len(inputs) == 0 {
		return errs
	}
	refs, putErrs := e.payloads.PutMany(inputs)
	for k, i := range which {
		_, errs[i] = e.spilled(specs[i], refs[k], putErrs[k])
	}
	return errs
}

// spilled records in spec where the payload store put its input (ref), or
// keeps the input inline when the store had no room.
func (e *Engine) spilled(spec *TaskSpec, ref string, err error) (string, error) {
	if err != nil {
		if IsNoSpace(err) {
			// This submission is under way (the disk guard let it in): its
			// input goes inline, into the WAL, whose write meets the full
			// disk, starts the episode that refuses the next submissions
			// and waits for space, as any accepted write does.
			e.inlineHeld.Add(int64(len(spec.Input)))
			e.inlineAdded.Add(int64(len(spec.Input)))
			return "", nil
		}
		return "", fmt.Errorf("dispatch: %w", err)
	}
	spec.InputRef, spec.InputSize, spec.Input = ref, int64(len(spec.Input)), nil
	return ref, nil
}

// putPayload stores b; a full disk starts a disk-full episode and is
// reported as the engine reports its own (*DiskFullError: 507 through the
// API).
func (e *Engine) putPayload(b []byte) (string, error) {
	ref, err := e.payloads.Put(b)
	if err != nil {
		if IsNoSpace(err) {
			return "", e.diskFullFrom(err)
		}
		return "", fmt.Errorf("dispatch: %w", err)
	}
	return ref, nil
}

// unpinHandled releases the pins of the payloads named by inputs the loop
// has just stepped: what they named is in the state now (or was refused),
// and a snapshot captured from now on sees it. Each such ref was pinned
// once by its own submission or attempt (spill, spillMany, spillOutput).
func (e *Engine) unpinHandled(inputs []any) {
	for _, in := range inputs {
		switch in := in.(type) {
		case *machine.SubmitInput:
			if in.Spec.InputRef != "" {
				e.payloads.Unpin(in.Spec.InputRef)
			}
		case machine.SubmitManyInput:
			for i := range in {
				if in[i].Spec.InputRef != "" {
					e.payloads.Unpin(in[i].Spec.InputRef)
				}
			}
		case machine.ResultInput:
			if in.Res.OutputRef != "" {
				e.payloads.Unpin(in.Res.OutputRef)
			}
		case *machine.ResultInput:
			if in.Res.OutputRef != "" {
				e.payloads.Unpin(in.Res.OutputRef)
			}
		}
	}
}

// loadInput reads the input of job from the payload store into job.Input,
// holding its bytes in the payload budget until release. A damaged or
// missing file fails the attempt for good, naming the file: retrying
// cannot bring the bytes back.
func (e *Engine) loadInput(job *Job) (release func(), failed *Result) {
	if job.InputRef == "" {
		return func() {}, nil
	}
	n := job.InputSize
	e.budget.Acquire(n)
	release = func() { e.budget.Release(n) }
	b, err := e.payloads.Get(job.InputRef, job.InputSize)
	if err != nil {
		release()
		var damaged *payload.DamagedError
		return func() {}, &Result{Outcome: OutcomeFailed, Retryable: !errors.As(err, &damaged), Error: "input: " + err.Error()}
	}
	job.Input = b
	return release, nil
}

// spillOutput moves an attempt's output larger than the inline limit to
// the payload store (res.OutputRef, pinned until the loop has handled the
// result). If the store cannot take it (a full disk), the output stays
// inline: an output is never lost for want of a file.
func (e *Engine) spillOutput(res *Result) {
	if e.keepInline(len(res.Output)) {
		return
	}
	n := int64(len(res.Output))
	e.budget.Acquire(n)
	defer e.budget.Release(n)
	ref, err := e.putPayload(res.Output)
	if err != nil {
		e.log.Warn("dispatch: an output stays in memory: the payload store refused it", "bytes", n, "err", err)
		return
	}
	res.OutputRef, res.OutputSize, res.Output = ref, n, nil
}

// resolveView reads what v names in the payload store: the outputs of its
// attempts (and the task's output), and with input its spec's input. A
// payload that cannot be read is left out and named in v.PayloadError.
func (e *Engine) resolveView(v *TaskView, input bool) {
	read := func(ref string, size int64) []byte {
		b, err := e.payloads.Get(ref, size)
		if err != nil {
			if v.PayloadError == "" {
				v.PayloadError = err.Error()
			}
			return nil
		}
		return b
	}
	if input && v.Spec.InputRef != "" && v.Spec.Input == nil {
		v.Spec.Input = read(v.Spec.InputRef, v.Spec.InputSize)
	}
	var last []byte // the task output is its last completed run's
	for i := range v.Runs {
		r := &v.Runs[i]
		for j := range r.Attempts {
			a := &r.Attempts[j]
			if a.OutputRef != "" && a.Output == nil {
				a.Output = read(a.OutputRef, a.OutputSize)
			}
			if r.State == RunCompleted && j == len(r.Attempts)-1 && a.OutputRef != "" {
				last = a.Output
			}
		}
	}
	if v.OutputRef != "" && v.Output == nil {
		v.Output = last
	}
}

// checkPayloads checks, by their size alone, that every payload the
// recovered state names is in the store, and logs each that is not
// (naming its file); the attempt that needs a damaged input fails naming
// it, and views name a damaged output.
func (e *Engine) checkPayloads(s *State) []error {
	var errs []error
	check := func(ref string, size int64) {
		if ref == "" {
			return
		}
		if err := e.payloads.Check(ref, size); err != nil {
			errs = append(errs, err)
		}
	}
	for _, t := range s.Tasks {
		check(t.Spec.InputRef, t.Spec.InputSize)
	}
	for _, r := range s.Runs {
		for i := range r.Attempts {
			check(r.Attempts[i].OutputRef, r.Attempts[i].OutputSize)
		}
	}
	const logged = 20
	for i, err := range errs {
		if i == logged {
			e.log.Warn("dispatch: more damaged payload files", "count", len(errs)-logged)
			break
		}
		e.log.Warn("dispatch: "+err.Error(), "payload_errors", len(errs))
	}
	return errs
}

// sweepPayloads removes the payload files that neither the snapshot just
// written (capture) nor anything put since it was captured names.
func (e *Engine) sweepPayloads(capture *machine.StateCapture) {
	live := map[string]struct{}{}
	capture.PayloadRefs(func(ref string) { live[ref] = struct{}{} })
	files, freed, err := e.payloads.Sweep(func(ref string) bool {
		_, ok := live[ref]
		return ok
	})
	if err != nil {
		e.log.Warn("dispatch: payload sweep", "err", err)
	}
	if files > 0 {
		e.log.Debug("dispatch: payload files removed", "files", files, "bytes", freed)
	}
}

// collector runs a garbage collection each time another quarter of the
// payload budget was freed (at least 1 MiB). The GC's own target is a
// multiple of the live heap (serve runs at GOGC=200: three times it), so
// without this the garbage of large payloads passing through would let
// the heap grow to several times the budget; with it, payload garbage
// stays near a quarter of the budget. One collection at a time; a kick
// while one runs is folded into it.
type collector struct {
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func (e *Engine) startCollector() {
	c := &e.collector
	c.kick, c.stop, c.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.kick:
				runtime.GC()
			case <-c.stop:
				return
			}
		}
	}()
	e.budget.OnFreed(max(e.budget.Max()/4, 1<<20), func() {
		select {
		case c.kick <- struct{}{}:
		default: // one is queued already
		}
	})
}

func (e *Engine) stopCollector() {
	e.collector.once.Do(func() {
		close(e.collector.stop)
		<-e.collector.done
	})
}

// keepInline decides whether a payload of n bytes stays in the WAL record
// and the state, and counts it if so: payloads up to SmallPayloadBytes
// always, up to Config.InlinePayloadBytes while the inline payloads held
// take less than half the payload budget.
func (e *Engine) keepInline(n int) bool {
	inline := e.cfg.InlinePayloadBytes
	if inline < 0 || n <= min(inline, SmallPayloadBytes) ||
		n <= inline && e.inlineHeld.Load() < e.budget.Max()/2 {
		e.inlineHeld.Add(int64(n))
		e.inlineAdded.Add(int64(n))
		return true
	}
	return false
}

// inlineBytes sums the inline inputs and outputs of tasks.
func inlineBytes(tasks map[TaskID]*Task, runs map[RunID]*Run) int64 {
	var n int64
	for _, t := range tasks {
		n += int64(len(t.Spec.Input))
	}
	for _, r := range runs {
		for i := range r.Attempts {
			n += int64(len(r.Attempts[i].Output))
		}
	}
	return n
}
