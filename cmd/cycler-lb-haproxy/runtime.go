package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// maxAnswer bounds one runtime API answer (a `show map` of a big map is
// the largest).
const maxAnswer = 16 << 20

// runtimeAPI talks to HAProxy's runtime API (the stats socket) in its
// non-interactive mode: one connection per command, one line sent, the
// answer read until HAProxy closes the connection.
type runtimeAPI struct {
	socket string
}

// do sends one command made of args and returns HAProxy's answer with
// trailing blank lines removed. Words are joined with single spaces; a word
// holding white space, ';' (the command separator), '\' (the escape) or a
// control character is refused rather than escaped, so nothing from a
// request can change the command's meaning.
func (r *runtimeAPI) do(ctx context.Context, args ...string) (string, error) {
	for _, a := range args {
		if a == "" || strings.ContainsFunc(a, func(c rune) bool { return c <= ' ' || c == ';' || c == '\\' || c == 0x7f }) {
			return "", fmt.Errorf("runtime API: refusing to send the word %q", a)
		}
	}
	line := strings.Join(args, " ")
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", r.socket)
	if err != nil {
		return "", fmt.Errorf("runtime API: connect to %s (is `stats socket %s level admin` in haproxy.cfg, is haproxy running, "+
			"and may this user open the socket?): %w", r.socket, r.socket, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// A past deadline unblocks any read or write at once when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return "", fmt.Errorf("runtime API: send %q: %w", line, wrapCtx(ctx, err))
	}
	b, err := io.ReadAll(io.LimitReader(conn, maxAnswer+1))
	if err != nil {
		return "", fmt.Errorf("runtime API: answer to %q: %w", line, wrapCtx(ctx, err))
	}
	if len(b) > maxAnswer {
		return "", fmt.Errorf("runtime API: answer to %q exceeds %d bytes", line, maxAnswer)
	}
	return strings.TrimRight(string(b), "\n"), nil
}

// expectEmpty runs a command that answers nothing on success (set server
// ... state, set/add/del map) and turns any answer into an error.
func (r *runtimeAPI) expectEmpty(ctx context.Context, args ...string) error {
	out, err := r.do(ctx, args...)
	if err != nil {
		return err
	}
	if out = strings.TrimSpace(out); out != "" {
		return &commandError{command: strings.Join(args, " "), answer: out}
	}
	return nil
}

// setAddr runs `set server <b>/<s> addr <ip> port <port>`. HAProxy answers
// it with a message either way; success starts "IP changed from" or "no need
// to change the addr", and anything else ("Invalid addr", "can't change
// <port> when port map is enabled", "No such server.") is an error.
func (r *runtimeAPI) setAddr(ctx context.Context, server, addr, port string) error {
	args := []string{"set", "server", server, "addr", addr, "port", port}
	out, err := r.do(ctx, args...)
	if err != nil {
		return err
	}
	out = strings.TrimSpace(out)
	ok := strings.HasPrefix(out, "IP changed from") || strings.HasPrefix(out, "no need to change the addr")
	if !ok || strings.Contains(out, "can't") {
		return &commandError{command: strings.Join(args, " "), answer: out}
	}
	return nil
}

// commandError is a command HAProxy refused; answer is its own message.
type commandError struct {
	command, answer string
}

func (e *commandError) Error() string {
	return fmt.Sprintf("haproxy refused %q: %s", e.command, strings.Join(strings.Fields(e.answer), " "))
}

// wrapCtx names ctx's error when ctx ended the I/O.
func wrapCtx(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	return err
}
