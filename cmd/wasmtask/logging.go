package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// newLogger returns an hclog logger (the project's logging library) and a
// slog.Logger that writes through it, for the packages that take a
// *slog.Logger (segwal, dispatch, plugins, host) so that they need no
// dependency beyond the standard library.
func newLogger(w io.Writer, level string, json bool) (hclog.Logger, *slog.Logger) {
	hl := hclog.New(&hclog.LoggerOptions{Name: "wasmtask", Output: w, Level: hclog.LevelFromString(level), JSONFormat: json})
	return hl, slog.New(&hclogHandler{l: hl})
}

// hclogHandler is a slog.Handler that forwards records to hclog.
type hclogHandler struct {
	l     hclog.Logger
	attrs []any
	group string
}

func (h *hclogHandler) Enabled(_ context.Context, lvl slog.Level) bool {
	switch {
	case lvl >= slog.LevelError:
		return h.l.IsError()
	case lvl >= slog.LevelWarn:
		return h.l.IsWarn()
	case lvl >= slog.LevelInfo:
		return h.l.IsInfo()
	}
	return h.l.IsDebug()
}

func (h *hclogHandler) Handle(_ context.Context, r slog.Record) error {
	args := append([]any(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		args = append(args, h.key(a.Key), a.Value.Any())
		return true
	})
	switch {
	case r.Level >= slog.LevelError:
		h.l.Error(r.Message, args...)
	case r.Level >= slog.LevelWarn:
		h.l.Warn(r.Message, args...)
	case r.Level >= slog.LevelInfo:
		h.l.Info(r.Message, args...)
	default:
		h.l.Debug(r.Message, args...)
	}
	return nil
}

func (h *hclogHandler) key(k string) string {
	if h.group != "" {
		return h.group + "." + k
	}
	return k
}

func (h *hclogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]any(nil), h.attrs...)
	for _, a := range attrs {
		n.attrs = append(n.attrs, h.key(a.Key), a.Value.Any())
	}
	return &n
}

func (h *hclogHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.group = h.key(name)
	return &n
}
