package varnish

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// CLI status codes (varnish-cli(7)).
const (
	statusOK        = 200
	statusTruncated = 201
	statusAuth      = 107
)

// maxResponse bounds one CLI answer; varnishd's own cli_limit defaults to 48 KB.
const maxResponse = 16 << 20

// ErrUnauthorized is returned when varnishd refuses the secret.
var ErrUnauthorized = errors.New("varnish CLI refused the secret")

// CLIError is a CLI answer with a status other than 200: varnishd refused or
// failed the command. Msg is varnishd's text (for a VCL that does not
// compile, the compiler's messages).
type CLIError struct {
	// Command is the command line that failed.
	Command string
	// Status is the CLI status code, like 106 (bad parameter) or 300 (cannot).
	Status int
	// Msg is varnishd's answer.
	Msg string
}

// Error implements error.
func (e *CLIError) Error() string {
	hint := ""
	if e.Status == statusTruncated {
		hint = " (answer truncated: raise varnishd's cli_limit parameter)"
	}
	return fmt.Sprintf("varnish CLI %q: status %d%s: %s", e.Command, e.Status, hint, strings.TrimSpace(e.Msg))
}

// cli is one authenticated connection to varnishd's management CLI (-T).
// It speaks the protocol of varnish-cli(7) directly: a request is one line
// of space-separated, optionally quoted words; an answer is a 13-byte header
// "SSS LLLLLLLL\n" (status and body length), the body and "\n".
type cli struct {
	conn net.Conn
	r    *bufio.Reader
	stop func() bool
	ctx  context.Context
}

// dialCLI connects to addr and answers varnishd's authentication challenge
// with secretFile. Every later call is bounded by ctx: its deadline becomes
// the connection's, and cancelling ctx unblocks any read or write.
func dialCLI(ctx context.Context, addr, secretFile string) (*cli, error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to varnish CLI %s (is varnishd running with -T %s?): %w", addr, addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c := &cli{conn: conn, r: bufio.NewReader(conn), ctx: ctx}
	// A past deadline makes blocked I/O return at once when ctx ends.
	c.stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	if err := c.auth(secretFile); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// auth reads the banner and, when varnishd asks (status 107), answers
// SHA256(challenge "\n" secret challenge "\n") in hex.
func (c *cli) auth(secretFile string) error {
	status, body, err := c.read()
	if err != nil {
		return fmt.Errorf("varnish CLI banner: %w", err)
	}
	if status == statusOK {
		return nil // varnishd runs without -S
	}
	if status != statusAuth {
		return fmt.Errorf("varnish CLI banner: status %d: %s", status, strings.TrimSpace(body))
	}
	challenge, _, _ := strings.Cut(body, "\n")
	if len(challenge) != 32 {
		return fmt.Errorf("varnish CLI: challenge %q is not 32 bytes", challenge)
	}
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		return fmt.Errorf("varnish CLI: read secret file (varnishd's -S): %w", err)
	}
	status, body, err = c.send("auth " + authResponse(challenge, secret))
	if err != nil {
		return err
	}
	if status != statusOK {
		return fmt.Errorf("%w (status %d): check that %s is varnishd's -S file: %s", ErrUnauthorized, status, secretFile, strings.TrimSpace(body))
	}
	return nil
}

// authResponse computes the answer to a CLI challenge.
func authResponse(challenge string, secret []byte) string {
	h := sha256.New()
	h.Write([]byte(challenge + "\n"))
	h.Write(secret)
	h.Write([]byte(challenge + "\n"))
	return hex.EncodeToString(h.Sum(nil))
}

// do runs one command and returns its answer, or a *CLIError when the
// status is not 200.
func (c *cli) do(args ...string) (string, error) {
	words := make([]string, len(args))
	for i, a := range args {
		words[i] = quote(a)
	}
	line := strings.Join(words, " ")
	status, body, err := c.send(line)
	if err != nil {
		return "", err
	}
	if status != statusOK {
		return body, &CLIError{Command: line, Status: status, Msg: body}
	}
	return body, nil
}

// send writes a command line and reads the answer.
func (c *cli) send(line string) (int, string, error) {
	if _, err := io.WriteString(c.conn, line+"\n"); err != nil {
		return 0, "", c.wrap(fmt.Errorf("varnish CLI: send %q: %w", firstWord(line), err))
	}
	status, body, err := c.read()
	if err != nil {
		return 0, "", c.wrap(fmt.Errorf("varnish CLI: answer to %q: %w", firstWord(line), err))
	}
	return status, body, nil
}

// read reads one answer.
func (c *cli) read() (int, string, error) {
	head, err := c.r.ReadString('\n')
	if err != nil {
		return 0, "", c.wrap(err)
	}
	f := strings.Fields(head)
	if len(f) != 2 {
		return 0, "", fmt.Errorf("malformed answer header %q", head)
	}
	status, err1 := strconv.Atoi(f[0])
	n, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || n < 0 || n > maxResponse {
		return 0, "", fmt.Errorf("malformed answer header %q", head)
	}
	body := make([]byte, n+1) // the body and its trailing "\n"
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, "", c.wrap(err)
	}
	return status, string(body[:n]), nil
}

// wrap names ctx's error when ctx ended the I/O.
func (c *cli) wrap(err error) error {
	if cerr := c.ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	return err
}

// Close closes the connection.
func (c *cli) Close() {
	c.stop()
	_ = c.conn.Close()
}

// quote makes s one CLI word: bare when it holds no space, quote,
// backslash or control character; otherwise double-quoted with backslash
// escapes, as the CLI's argument parser reads them.
func quote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r == 0x7f }) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"' || ch == '\\':
			b.WriteByte('\\')
			b.WriteByte(ch)
		case ch == '\n':
			b.WriteString(`\n`)
		case ch == '\r':
			b.WriteString(`\r`)
		case ch == '\t':
			b.WriteString(`\t`)
		case ch < ' ' || ch == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, ch)
		default:
			b.WriteByte(ch)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func firstWord(line string) string {
	w, _, _ := strings.Cut(line, " ")
	return w
}
