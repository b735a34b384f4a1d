package api

import (
	"fmt"
	"strings"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/plugins"
)

// taskView is viewFrom plus what only the server knows: the attempt
// timeout the task's plugin allows.
func (s *Server) taskView(v dispatch.TaskView) TaskView {
	out := viewFrom(v)
	if s.cfg.Plugins == nil || v.Spec.TimeoutMs <= 0 {
		return out
	}
	asked := time.Duration(v.Spec.TimeoutMs) * time.Millisecond
	limit, source, ok := s.cfg.Plugins.AttemptTimeout(v.Handler)
	if !ok || limit >= asked {
		out.EffectiveTimeout = out.Timeout
		return out
	}
	out.EffectiveTimeout = limit.String()
	name, _, _ := strings.Cut(v.Handler, "@")
	switch source {
	case plugins.TimeoutMax:
		out.TimeoutNote = fmt.Sprintf("clamped to %s by the server's --max-timeout", limit)
	case plugins.TimeoutManifest:
		out.TimeoutNote = fmt.Sprintf("lowered to %s by plugin %s's limits.timeout", limit, name)
	default:
		out.TimeoutNote = fmt.Sprintf("lowered to %s, the default attempt limit of a plugin; plugin %s's manifest can raise it with limits.timeout (up to the server's --max-timeout, %s)",
			limit, name, s.cfg.Plugins.MaxTimeout())
	}
	return out
}
