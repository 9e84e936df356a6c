package raftstore

import (
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestHCLogBridge(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := newHCLogger(zap.New(core)).Named("snapshots").With("node", "s1")

	tests := []struct {
		name      string
		log       func()
		wantLevel zapcore.Level
		wantMsg   string
		wantField string
		wantValue any
	}{
		{name: "trace becomes debug", log: func() { l.Trace("t") }, wantLevel: zapcore.DebugLevel, wantMsg: "t"},
		{name: "info", log: func() { l.Info("i", "leader-address", "a:1") }, wantLevel: zapcore.InfoLevel, wantMsg: "i", wantField: "leader_address", wantValue: "a:1"},
		{name: "warn", log: func() { l.Warn("w", "count", 3) }, wantLevel: zapcore.WarnLevel, wantMsg: "w", wantField: "count", wantValue: int64(3)},
		{name: "error value", log: func() { l.Error("e", "error", errors.New("boom")) }, wantLevel: zapcore.ErrorLevel, wantMsg: "e", wantField: "error", wantValue: "boom"},
		{name: "hclog format", log: func() { l.Info("f", "n", hclog.Fmt("%d-%s", 1, "x")) }, wantLevel: zapcore.InfoLevel, wantMsg: "f", wantField: "n", wantValue: "1-x"},
		{name: "odd args", log: func() { l.Info("o", "lonely") }, wantLevel: zapcore.InfoLevel, wantMsg: "o", wantField: "extra_value_at_end", wantValue: "lonely"},
		{name: "standard logger", log: func() { l.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}).Print("std") }, wantLevel: zapcore.WarnLevel, wantMsg: "std"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.TakeAll()
			tt.log()
			got := logs.TakeAll()
			if len(got) != 1 {
				t.Fatalf("got %d entries, want 1", len(got))
			}
			e := got[0]
			if e.Level != tt.wantLevel || e.Message != tt.wantMsg || e.LoggerName != "raft.snapshots" {
				t.Errorf("entry = %v %q from %q, want %v %q from raft.snapshots", e.Level, e.Message, e.LoggerName, tt.wantLevel, tt.wantMsg)
			}
			fields := e.ContextMap()
			if fields["node"] != "s1" {
				t.Errorf("implied field node = %v, want s1", fields["node"])
			}
			if tt.wantField != "" && fields[tt.wantField] != tt.wantValue {
				t.Errorf("field %s = %#v, want %#v (all: %v)", tt.wantField, fields[tt.wantField], tt.wantValue, fields)
			}
		})
	}
}

func TestHCLogBridgeLevels(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	l := newHCLogger(zap.New(core))
	l.Info("dropped")
	l.Warn("kept")
	if n := logs.Len(); n != 1 {
		t.Fatalf("got %d entries, want only the warning", n)
	}
	if l.IsDebug() || l.IsInfo() || !l.IsWarn() || l.GetLevel() != hclog.Warn {
		t.Errorf("level guards disagree with zap's level: debug=%v info=%v warn=%v level=%v", l.IsDebug(), l.IsInfo(), l.IsWarn(), l.GetLevel())
	}
	if got := l.Named("a").ResetNamed("b").Name(); got != "raft.b" {
		t.Errorf("ResetNamed name = %q, want raft.b", got)
	}
}
