package raftstore

import (
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// hclogZap adapts a zap logger to hclog.Logger, the interface raft logs
// through. This is the project's only bridge between the two.
//
// Levels map Trace→Debug and the rest one to one. The level is zap's: SetLevel
// is a no-op, as hclog allows for loggers that cannot change level. Keys are
// rewritten to snake_case ("leader-address" → "leader_address").
type hclogZap struct {
	z       *zap.Logger
	root    *zap.Logger // the logger named "raft", for ResetNamed
	name    string
	implied []any
}

// newHCLogger returns an hclog.Logger writing to log.Named("raft").
func newHCLogger(log *zap.Logger) hclog.Logger {
	z := log.Named("raft")
	return &hclogZap{z: z, root: z, name: "raft"}
}

// Log implements hclog.Logger.
func (l *hclogZap) Log(level hclog.Level, msg string, args ...any) {
	if ce := l.z.Check(zapLevel(level), msg); ce != nil {
		ce.Write(hclogFields(args)...)
	}
}

func zapLevel(level hclog.Level) zapcore.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return zapcore.DebugLevel
	case hclog.Warn:
		return zapcore.WarnLevel
	case hclog.Error:
		return zapcore.ErrorLevel
	default:
		return zapcore.InfoLevel
	}
}

// hclogFields turns hclog's alternating key, value arguments into zap fields.
func hclogFields(args []any) []zap.Field {
	fields := make([]zap.Field, 0, (len(args)+1)/2)
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			// hclog's own convention for an odd argument list.
			fields = append(fields, zap.Any("extra_value_at_end", args[i]))
			break
		}
		key := snakeKey(fmt.Sprint(args[i]))
		switch v := args[i+1].(type) {
		case error:
			fields = append(fields, zap.NamedError(key, v))
		case hclog.Format:
			fields = append(fields, zap.String(key, formatHCLog(v)))
		case fmt.Stringer:
			fields = append(fields, zap.Stringer(key, v))
		default:
			fields = append(fields, zap.Any(key, v))
		}
	}
	return fields
}

// formatHCLog renders an hclog.Format value: a format string and its args.
func formatHCLog(v hclog.Format) string {
	if len(v) == 0 {
		return ""
	}
	return fmt.Sprintf(fmt.Sprint(v[0]), v[1:]...)
}

var snakeReplacer = strings.NewReplacer("-", "_", " ", "_")

func snakeKey(k string) string {
	return snakeReplacer.Replace(k)
}

// Trace implements hclog.Logger.
func (l *hclogZap) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (l *hclogZap) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (l *hclogZap) Info(msg string, args ...any) { l.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (l *hclogZap) Warn(msg string, args ...any) { l.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (l *hclogZap) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

// IsTrace implements hclog.Logger.
func (l *hclogZap) IsTrace() bool { return l.z.Core().Enabled(zapcore.DebugLevel) }

// IsDebug implements hclog.Logger.
func (l *hclogZap) IsDebug() bool { return l.z.Core().Enabled(zapcore.DebugLevel) }

// IsInfo implements hclog.Logger.
func (l *hclogZap) IsInfo() bool { return l.z.Core().Enabled(zapcore.InfoLevel) }

// IsWarn implements hclog.Logger.
func (l *hclogZap) IsWarn() bool { return l.z.Core().Enabled(zapcore.WarnLevel) }

// IsError implements hclog.Logger.
func (l *hclogZap) IsError() bool { return l.z.Core().Enabled(zapcore.ErrorLevel) }

// ImpliedArgs implements hclog.Logger.
func (l *hclogZap) ImpliedArgs() []any { return l.implied }

// With implements hclog.Logger.
func (l *hclogZap) With(args ...any) hclog.Logger {
	c := *l
	c.z = l.z.With(hclogFields(args)...)
	c.implied = append(append([]any(nil), l.implied...), args...)
	return &c
}

// Name implements hclog.Logger.
func (l *hclogZap) Name() string { return l.name }

// Named implements hclog.Logger.
func (l *hclogZap) Named(name string) hclog.Logger {
	c := *l
	c.z = l.z.Named(name)
	c.name = l.name + "." + name
	return &c
}

// ResetNamed implements hclog.Logger. zap names cannot be reset, so the name
// restarts below "raft", keeping every raft log under that component.
func (l *hclogZap) ResetNamed(name string) hclog.Logger {
	c := *l
	c.z = l.root.Named(name).With(hclogFields(l.implied)...)
	c.name = "raft." + name
	return &c
}

// SetLevel implements hclog.Logger as a no-op: the zap logger owns the level.
func (l *hclogZap) SetLevel(hclog.Level) {}

// GetLevel implements hclog.Logger.
func (l *hclogZap) GetLevel() hclog.Level {
	switch {
	case l.IsDebug():
		return hclog.Debug
	case l.IsInfo():
		return hclog.Info
	case l.IsWarn():
		return hclog.Warn
	case l.IsError():
		return hclog.Error
	}
	return hclog.Off
}

// StandardLogger implements hclog.Logger.
func (l *hclogZap) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger. Each write becomes one log entry at
// opts.ForceLevel, or Info.
func (l *hclogZap) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return &hclogWriter{l: l, level: level}
}

type hclogWriter struct {
	l     *hclogZap
	level hclog.Level
}

func (w *hclogWriter) Write(p []byte) (int, error) {
	w.l.Log(w.level, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ hclog.Logger = (*hclogZap)(nil)
