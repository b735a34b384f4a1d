package e2e

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// TestHotSwapUnderLoad deploys v2 of a plugin while 1,000 tasks of it are
// submitted and running: every attempt records v1 or v2, all complete on
// their first attempt, and tasks submitted after the deploy returned run
// on v2.
func TestHotSwapUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 tasks across a hot-swap: skipped with -short")
	}
	const (
		total     = 1000
		clients   = 16
		swapAfter = 400 // acknowledged submissions before v2 is deployed
	)
	s := startServer(t, serverOpts{})
	ctx := context.Background()
	v1 := s.deploy("sw", module(t, "swap_v1"))
	v2wasm := module(t, "swap_v2")

	var (
		acked     atomic.Int64
		swapped   atomic.Bool // set once the v2 deploy has returned
		mu        sync.Mutex
		afterSwap = map[string]bool{} // task id -> submitted after the swap
		ids       []string
	)
	swapNow := make(chan struct{})
	swapErr := make(chan error, 1)
	var inFlightAtSwap int
	go func() {
		<-swapNow
		st, err := s.client.EngineStatus(ctx)
		if err == nil {
			inFlightAtSwap = st.InFlight
		}
		res, err := s.client.PluginDeploy(ctx, "sw", v2wasm, nil)
		if err == nil && !res.Changed {
			err = errUnchanged
		}
		swapped.Store(true)
		swapErr <- err
	}()
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				after := swapped.Load()
				res, err := s.client.Submit(ctx, api.TaskSpec{Handler: "sw"})
				if err != nil {
					t.Errorf("submit: %v", err)
					return
				}
				mu.Lock()
				ids = append(ids, res.Task.ID)
				afterSwap[res.Task.ID] = after
				mu.Unlock()
				if acked.Add(1) == swapAfter {
					close(swapNow)
				}
			}
		}()
	}
	wg.Wait()
	if err := <-swapErr; err != nil {
		t.Fatalf("deploy v2: %v", err)
	}
	info, err := s.client.PluginGet(ctx, "sw")
	if err != nil {
		t.Fatal(err)
	}
	v2 := info.Active
	if v2 == v1 || len(info.History) != 2 {
		t.Fatalf("after the swap: active %s, history %+v", v2, info.History)
	}

	var onV1, onV2, late int
	views := make([]api.TaskView, len(ids))
	var wwg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, id := range ids {
		wwg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wwg.Done() }()
			views[i] = s.waitFinal(id, time.Minute)
		}()
	}
	wwg.Wait()
	for _, v := range views {
		a := attempts(v)
		if v.State != "completed" || len(a) != 1 || a[0].Outcome != "ok" {
			t.Errorf("task %s: %s with attempts %+v; want completed on the first attempt", v.ID, v.State, a)
			continue
		}
		switch a[0].Module {
		case v1:
			onV1++
			if *v.Output != "v1" {
				t.Errorf("task %s ran on v1 but output %q", v.ID, *v.Output)
			}
			if afterSwap[v.ID] {
				t.Errorf("task %s was submitted after the swap but ran on v1", v.ID)
			}
		case v2:
			onV2++
			if *v.Output != "v2" {
				t.Errorf("task %s ran on v2 but output %q", v.ID, *v.Output)
			}
		default:
			t.Errorf("task %s ran on %q, neither v1 nor v2", v.ID, a[0].Module)
		}
		if afterSwap[v.ID] {
			late++
		}
	}
	t.Logf("%d tasks: %d on v1, %d on v2; %d submitted after the swap; %d attempts in flight when v2 was deployed",
		len(views), onV1, onV2, late, inFlightAtSwap)
	if len(views) != total || onV1 == 0 || onV2 == 0 || late == 0 {
		t.Errorf("want %d tasks on both versions, some submitted after the swap", total)
	}
	// The registry's per-version counts agree.
	info, _ = s.client.PluginGet(ctx, "sw")
	if got1, got2 := info.Attempts[v1]["ok"], info.Attempts[v2]["ok"]; got1 != onV1 || got2 != onV2 {
		t.Errorf("plugin attempt counts: v1 %d v2 %d, want %d %d", got1, got2, onV1, onV2)
	}
}

var errUnchanged = errors.New("deploy of v2 reported no change")
