package varnish

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeCLI is a minimal varnishd management port for unit tests of the
// protocol code: it sends a challenge, checks the answer against its secret
// and answers commands from a table. The real varnishd is exercised by the
// integration tests.
type fakeCLI struct {
	addr    string
	secret  []byte
	answers map[string]string // command line -> "status body"
	// silent makes the server accept but never answer, to test ctx bounds;
	// accepted is closed when it has accepted.
	silent   bool
	accepted chan struct{}

	mu   sync.Mutex
	seen []string
}

const fakeChallenge = "abcdefghijklmnopqrstuvwxyzABCDEF"

func startFakeCLI(t *testing.T, f *fakeCLI) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				f.serve(conn)
			}()
		}
	}()
}

func writeAnswer(w *bufio.Writer, status int, body string) {
	fmt.Fprintf(w, "%-3d %-8d\n%s\n", status, len(body), body)
	w.Flush()
}

func (f *fakeCLI) serve(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r, w := bufio.NewReader(conn), bufio.NewWriter(conn)
	if f.silent {
		close(f.accepted)
		_, _ = r.ReadString('\n') // hold the connection until the client gives up
		return
	}
	writeAnswer(w, statusAuth, fakeChallenge+"\n\nAuthentication required.\n")
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	if strings.TrimSuffix(line, "\n") != "auth "+authResponse(fakeChallenge, f.secret) {
		writeAnswer(w, statusAuth, "Authentication failed")
		return
	}
	writeAnswer(w, statusOK, "banner")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		f.mu.Lock()
		f.seen = append(f.seen, line)
		f.mu.Unlock()
		ans, ok := f.answers[line]
		if !ok {
			writeAnswer(w, 101, "Unknown request.")
			continue
		}
		var status int
		var body string
		fmt.Sscanf(ans, "%d", &status)
		_, body, _ = strings.Cut(ans, " ")
		writeAnswer(w, status, body)
	}
}

func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLIAuthAndCommands(t *testing.T) {
	f := &fakeCLI{secret: []byte("s3cret\n"), answers: map[string]string{
		"ping":                       "200 PONG 1 1.0",
		`vcl.load x "/tmp/a b.vcl"`:  "200 VCL compiled.",
		"vcl.load bad /tmp/bad.vcl":  "106 Message from VCC-compiler:\nSyntax error",
		"big":                        "200 " + strings.Repeat("x", 100000),
		"vcl.use y":                  "201 truncated",
		`say "quote\" and \\ and\n"`: "200 ok",
	}}
	startFakeCLI(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialCLI(ctx, f.addr, secretFile(t, "s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	tests := []struct {
		give       []string
		want       string
		wantStatus int
	}{
		{give: []string{"ping"}, want: "PONG 1 1.0"},
		{give: []string{"vcl.load", "x", "/tmp/a b.vcl"}, want: "VCL compiled."},
		{give: []string{"vcl.load", "bad", "/tmp/bad.vcl"}, wantStatus: 106},
		{give: []string{"big"}, want: strings.Repeat("x", 100000)},
		{give: []string{"vcl.use", "y"}, wantStatus: statusTruncated},
		{give: []string{"say", "quote\" and \\ and\n"}, want: "ok"},
	}
	for _, tt := range tests {
		got, err := c.do(tt.give...)
		var cerr *CLIError
		switch {
		case tt.wantStatus != 0:
			if !errors.As(err, &cerr) || cerr.Status != tt.wantStatus {
				t.Errorf("do(%q): err %v, want CLIError status %d", tt.give, err, tt.wantStatus)
			}
		case err != nil:
			t.Errorf("do(%q): %v", tt.give, err)
		case got != tt.want:
			t.Errorf("do(%q) = %.50q, want %.50q", tt.give, got, tt.want)
		}
	}
}

func TestCLIWrongSecret(t *testing.T) {
	f := &fakeCLI{secret: []byte("right\n")}
	startFakeCLI(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := dialCLI(ctx, f.addr, secretFile(t, "wrong\n"))
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("dial with a wrong secret: err %v, want ErrUnauthorized", err)
	}
	_, err = dialCLI(ctx, f.addr, filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(err.Error(), "secret file") {
		t.Fatalf("dial with a missing secret file: err %v", err)
	}
}

func TestCLIBoundedByContext(t *testing.T) {
	f := &fakeCLI{silent: true, accepted: make(chan struct{})}
	startFakeCLI(t, f)
	secret := secretFile(t, "x")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := dialCLI(ctx, f.addr, secret)
		done <- err
	}()
	// Cancel only once the client is connected and blocked on the banner.
	<-f.accepted
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("dialCLI did not return after its ctx was cancelled")
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ give, want string }{
		{give: "vcl.list", want: "vcl.list"},
		{give: "", want: `""`},
		{give: "a b", want: `"a b"`},
		{give: `a"b\c`, want: `"a\"b\\c"`},
		{give: "a\nb\x01", want: `"a\nb\x01"`},
	}
	for _, tt := range tests {
		if got := quote(tt.give); got != tt.want {
			t.Errorf("quote(%q) = %s, want %s", tt.give, got, tt.want)
		}
	}
}
