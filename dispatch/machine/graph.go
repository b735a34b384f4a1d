package machine

import "strings"

// findCycle reports a cycle that adding the edges task -> after (task waits
// for each of after) would close, as the path of ids from task back to
// task, or nil. prereqs returns a task's current prerequisites.
func findCycle(task TaskID, after []TaskID, prereqs func(TaskID) []TaskID) []TaskID {
	// A cycle exists when task is reachable from one of the new
	// prerequisites by following prerequisite edges.
	for _, start := range after {
		if start == task {
			return []TaskID{task, task}
		}
		seen := map[TaskID]bool{}
		var path []TaskID
		var dfs func(TaskID) bool
		dfs = func(id TaskID) bool {
			if id == task {
				path = append(path, id)
				return true
			}
			if seen[id] {
				return false
			}
			seen[id] = true
			for _, p := range prereqs(id) {
				if dfs(p) {
					path = append(path, id)
					return true
				}
			}
			return false
		}
		if dfs(start) {
			// path is task <- ... <- start (reversed); render task -> start -> ... -> task
			cycle := []TaskID{task}
			for i := len(path) - 1; i >= 0; i-- {
				cycle = append(cycle, path[i])
			}
			return cycle
		}
	}
	return nil
}

func renderCycle(c []TaskID) string {
	s := make([]string, len(c))
	for i, id := range c {
		s[i] = string(id)
	}
	return strings.Join(s, " -> ")
}
