package smoke

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// excerptBytes is how much of a body or output line an error message quotes.
const excerptBytes = 128

// commandWaitDelay bounds how long a command's output pipes may stay open
// after it exits or is killed, for example by a child it left running.
const commandWaitDelay = 2 * time.Second

// checkURL returns the URL an HTTP check requests on t.
func checkURL(t Target, c compiled) string {
	return t.scheme() + "://" + t.addr(c.Port) + c.HTTP.Path
}

// probeHTTP sends c's request to t and judges the response: status first,
// then headers, then body, reporting the first expectation that fails.
func (r *Runner) probeHTTP(ctx context.Context, t Target, c compiled) error {
	h := c.HTTP
	what := describe(t, c)
	req, err := http.NewRequestWithContext(ctx, h.Method, checkURL(t, c), nil)
	if err != nil {
		return fail(ReasonError, "%s: building request: %v", what, err)
	}
	if h.Host != "" {
		req.Host = h.Host
	}
	req.Header.Set("User-Agent", "cycler-smoke")
	client := r.noFollow
	if h.FollowRedirects {
		client = r.follow
	}
	resp, err := client.Do(req)
	if err != nil {
		return fail(transportReason(err), "%s: %v", what, unwrapURLError(err))
	}
	defer resp.Body.Close()
	// Why a limit: a misbehaving host must not make the controller buffer
	// an unbounded body; expectations are judged on the first bytes only.
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, h.MaxBodyBytes))

	if !slices.Contains(h.Status, resp.StatusCode) {
		msg := fmt.Sprintf("%s: status %d, want %s", what, resp.StatusCode, wantStatus(h.Status))
		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode/100 == 3 && !h.FollowRedirects {
			msg += fmt.Sprintf(" (redirect to %q not followed)", loc)
		}
		if len(body) > 0 {
			msg += "; body " + excerpt(body)
		}
		return fail(ReasonStatus, "%s", msg)
	}
	for _, name := range slices.Sorted(maps.Keys(h.Headers)) {
		want, got := h.Headers[name], resp.Header.Values(name)
		switch {
		case len(got) == 0:
			return fail(ReasonHeader, "%s: header %q missing, want %q", what, name, want)
		case !slices.Contains(got, want):
			return fail(ReasonHeader, "%s: header %q is %q, want %q", what, name, strings.Join(got, ", "), want)
		}
	}
	if readErr != nil {
		return fail(ReasonError, "%s: reading body: %v", what, readErr)
	}
	var note string
	if int64(len(body)) == h.MaxBodyBytes {
		note = fmt.Sprintf(" (only the first %d bytes are read)", h.MaxBodyBytes)
	}
	if h.BodyContains != "" && !bytes.Contains(body, []byte(h.BodyContains)) {
		return fail(ReasonBody, "%s: body does not contain %q%s; body %s", what, h.BodyContains, note, excerpt(body))
	}
	if c.bodyRE != nil && !c.bodyRE.Match(body) {
		return fail(ReasonBody, "%s: body does not match regexp %q%s; body %s", what, h.BodyMatches, note, excerpt(body))
	}
	return nil
}

// wantStatus formats the accepted status codes.
func wantStatus(codes []int) string {
	if len(codes) == 1 {
		return strconv.Itoa(codes[0])
	}
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = strconv.Itoa(c)
	}
	return "one of " + strings.Join(parts, ", ")
}

// excerpt quotes the start of b for an error message.
func excerpt(b []byte) string {
	if len(b) == 0 {
		return "is empty"
	}
	if len(b) <= excerptBytes {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q... (%d bytes)", b[:excerptBytes], len(b))
}

// transportReason classifies an error from http.Client.Do.
func transportReason(err error) Reason {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Timeout() {
		return ReasonTimeout
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return ReasonConnect
	}
	return ReasonError
}

// unwrapURLError drops the url.Error wrapper, whose message repeats the
// method and URL that the check's message already starts with.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// probeTCP opens a TCP connection to t and closes it.
func probeTCP(ctx context.Context, t Target, c compiled) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.addr(c.Port))
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err // drop "dial tcp host:port", which the message repeats
		}
		return fail(ReasonConnect, "%s: %v", describe(t, c), err)
	}
	// A close error says nothing about the host's health; the connect
	// already proved what the check asks.
	_ = conn.Close()
	return nil
}

// probeCommand runs c's program with the target in its environment and
// returns the tail of its combined output.
func probeCommand(ctx context.Context, t Target, c compiled) (string, error) {
	argv := c.Command.Argv
	port := c.Port
	if port == 0 {
		port = t.Port
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		"CYCLER_HOST="+t.Host,
		"CYCLER_PORT="+strconv.Itoa(port),
		"CYCLER_VERSION="+t.Version,
		"CYCLER_INSTANCE_ID="+t.InstanceID,
		"CYCLER_SCHEME="+t.scheme(),
		"CYCLER_CHECK="+c.Name,
	)
	// One writer for both streams: exec then calls Write from one goroutine
	// at a time, so the tail needs no lock and keeps the streams' order.
	tail := &tailWriter{limit: OutputTailBytes}
	cmd.Stdout, cmd.Stderr = tail, tail
	cmd.WaitDelay = commandWaitDelay
	killGroupOnCancel(cmd)
	err := cmd.Run()
	out := tail.String()
	if err == nil {
		return out, nil
	}
	what := describe(t, c)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		msg := fmt.Sprintf("%s: exit status %d", what, ee.ExitCode())
		if line := lastLine(out); line != "" {
			msg += fmt.Sprintf("; last output %q", line)
		}
		return out, fail(ReasonExit, "%s", msg)
	}
	return out, fail(ReasonError, "%s: %v", what, err)
}

// lastLine returns the last non-empty line of s, cut to excerptBytes.
func lastLine(s string) string {
	s = strings.TrimRight(s, "\r\n\t ")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > excerptBytes {
		s = s[len(s)-excerptBytes:]
	}
	return s
}

// tailWriter keeps the last limit bytes written to it.
type tailWriter struct {
	buf   []byte
	limit int
}

// Write implements io.Writer; it never fails.
func (w *tailWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= w.limit {
		w.buf = append(w.buf[:0], p[len(p)-w.limit:]...)
		return n, nil
	}
	if over := len(w.buf) + len(p) - w.limit; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	w.buf = append(w.buf, p...)
	return n, nil
}

// String returns the kept bytes, without a partial UTF-8 character that
// the cut may have left at the start.
func (w *tailWriter) String() string {
	b := w.buf
	for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
		b = b[1:]
	}
	return string(b)
}

var _ io.Writer = (*tailWriter)(nil)
