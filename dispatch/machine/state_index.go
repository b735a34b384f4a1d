package machine

import (
	"slices"
	"strconv"
	"strings"
)

// IndexSummary renders the live entries of s's derived indexes (ready,
// timers, leases, in-flight count, finals, counts) canonically: two states
// that schedule alike have equal summaries whatever their history. For tests
// and tools that check a state rebuilt from a snapshot or a replay.
func (s *State) IndexSummary() string {
	var w strings.Builder
	// Heap layout depends on history; the set of live entries does not.
	live := func(name string, n int, ok func(i int) (RunID, int64, bool)) {
		var entries []string
		for i := range n {
			if id, at, valid := ok(i); valid {
				entries = append(entries, string(id)+"@"+strconv.FormatInt(at, 10))
			}
		}
		slices.Sort(entries)
		w.WriteString(name + ": " + strings.Join(entries, " ") + ";")
	}
	live("ready", s.ready.Len(), func(i int) (RunID, int64, bool) {
		e := s.ready[i]
		return e.run.ID, e.due, e.run.gen == e.gen
	})
	live("timers", s.timers.Len(), func(i int) (RunID, int64, bool) {
		e := s.timers[i]
		return e.run.ID, e.at, e.run.gen == e.gen
	})
	live("leases", s.leases.Len(), func(i int) (RunID, int64, bool) {
		e := s.leases[i]
		return e.run.ID, e.at, e.run.gen == e.gen
	})
	w.WriteString(" inflight=" + strconv.Itoa(s.Inflight) + " finals=" + strings.Join(taskIDStrings(s.Finals()), ","))
	counts := s.Counts()
	for _, k := range []RunState{RunScheduled, RunReady, RunLeased, RunRunning, RunRetryWait, RunCompleted, RunFailed, RunCanceled} {
		w.WriteString(" " + string(k) + "=" + strconv.Itoa(counts[k]))
	}
	return w.String()
}

func taskIDStrings(ids []TaskID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}
