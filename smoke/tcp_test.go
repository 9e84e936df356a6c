package smoke_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/cyclerhq/cycler/smoke"
)

func TestTCPCheck(t *testing.T) {
	open := targetAt(t, startTCP(t))
	closed := targetAt(t, closedAddr(t))
	tests := []struct {
		name       string
		target     smoke.Target
		port       int
		wantPassed bool
		wantReason smoke.Reason
		wantErr    string
	}{
		{name: "listening", target: open, wantPassed: true},
		{name: "refused", target: closed, wantReason: smoke.ReasonConnect,
			wantErr: fmt.Sprintf("tcp connect 127.0.0.1:%d: connect: connection refused", closed.Port)},
		{name: "port override", target: closed, port: open.Port, wantPassed: true},
	}
	r := newRunner(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := smoke.Check{Name: "port", Kind: smoke.KindTCP, Port: tt.port}
			got := only(t, r.Run(context.Background(), tt.target, []smoke.Check{c}))
			if got.Passed != tt.wantPassed || got.Reason != tt.wantReason || got.Error != tt.wantErr {
				t.Errorf("got passed=%v reason=%q error=%q\nwant passed=%v reason=%q error=%q",
					got.Passed, got.Reason, got.Error, tt.wantPassed, tt.wantReason, tt.wantErr)
			}
		})
	}
}
