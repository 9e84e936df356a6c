package smoke_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/cyclerhq/cycler/smoke"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newRunner returns a Runner with the default client, logging to t.
func newRunner(t *testing.T) *smoke.Runner {
	t.Helper()
	return smoke.New(zaptest.NewLogger(t), nil)
}

// startServer starts an httptest server closed at cleanup and returns the
// target for it and its base URL.
func startServer(t *testing.T, h http.Handler) (smoke.Target, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return targetAt(t, u.Host), srv.URL
}

// targetAt returns a target for a host:port address.
func targetAt(t *testing.T, addr string) smoke.Target {
	t.Helper()
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatal(err)
	}
	return smoke.Target{Host: host, Port: port, Version: "1.2.3", InstanceID: "web-1"}
}

// startTCP starts a TCP listener on loopback that accepts and closes
// connections until cleanup, and returns its address.
func startTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// closedAddr returns a loopback address nothing listens on: a port that
// was just bound and released.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// only runs one check and returns its result, failing unless there is
// exactly one.
func only(t *testing.T, res smoke.Result) smoke.CheckResult {
	t.Helper()
	if len(res.Checks) != 1 {
		t.Fatalf("got %d check results, want 1: %+v", len(res.Checks), res)
	}
	return res.Checks[0]
}
