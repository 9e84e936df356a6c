package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
)

// CyclerdOptions describes one cyclerd process.
type CyclerdOptions struct {
	// Role is the subcommand: "server", "agent" or "lb". Required.
	Role string
	// Config is the HCL config, written to <Dir>/cyclerd.hcl. Relative paths in it
	// resolve against Dir, the process's working directory.
	Config string
	// APIAddr is the host:port where the process serves GET /v1/health; readiness is
	// a 200 from it. Required.
	APIAddr string
	// TLS polls https:// instead of http:// (certificates are not verified: the
	// probe talks to a loopback child the harness started).
	TLS bool
	// Token, if set, is sent as a bearer token with the health probe.
	Token string
	// Name labels the process and its log. Default "cyclerd-<role>".
	Name string
	// Dir is the working directory. Default: a new temp dir.
	Dir string
	// ExtraArgs follow `<role> --config FILE`.
	ExtraArgs []string
	// Env is added to the environment.
	Env []string
	// Netns, if set, runs the process inside that network namespace
	// (`ip netns exec NAME cyclerd ...`, which execs, so the pid is
	// cyclerd's); see StartNetns. APIAddr must then be reachable from the
	// harness's namespace.
	Netns string
}

// Cyclerd is a running cyclerd, started by StartCyclerd.
type Cyclerd struct {
	*Process
	// ConfigPath is the config file the process was started with.
	ConfigPath string
	// Dir is the working directory.
	Dir string

	url string
}

// URL returns the API base URL, http(s)://APIAddr.
func (c *Cyclerd) URL() string { return c.url }

// StartCyclerd builds cmd/cyclerd (once per process), writes opts.Config to a file
// and runs `cyclerd <role> --config FILE <extra args>`, waiting until
// GET <URL>/v1/health answers 200.
func StartCyclerd(t T, opts CyclerdOptions) *Cyclerd {
	t.Helper()
	if opts.Role == "" || opts.APIAddr == "" {
		fatalf(t, "harness: cyclerd needs Role and APIAddr; got role %q, api addr %q", opts.Role, opts.APIAddr)
	}
	bin := BuildBinary(t, "./cmd/cyclerd")
	if opts.Name == "" {
		opts.Name = "cyclerd-" + opts.Role
	}
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), opts.Name)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		fatalf(t, "harness: %s: make dir: %v", opts.Name, err)
	}
	scheme := "http"
	if opts.TLS {
		scheme = "https"
	}
	c := &Cyclerd{
		ConfigPath: filepath.Join(opts.Dir, "cyclerd.hcl"),
		url:        scheme + "://" + opts.APIAddr,
		Dir:        opts.Dir,
	}
	// The config may hold tokens, so only the owner reads it.
	if err := os.WriteFile(c.ConfigPath, []byte(opts.Config), 0o600); err != nil {
		fatalf(t, "harness: %s: write config: %v", opts.Name, err)
	}
	args := append([]string{opts.Role, "--config", c.ConfigPath}, opts.ExtraArgs...)
	path := bin
	if opts.Netns != "" {
		path, args = "ip", append([]string{"netns", "exec", opts.Netns, bin}, args...)
	}
	c.Process = StartProcess(t, ProcessConfig{
		Name:  opts.Name,
		Path:  path,
		Args:  args,
		Env:   opts.Env,
		Dir:   opts.Dir,
		Ready: healthProbe(c.url+"/v1/health", opts.Token),
	})
	return c
}

// healthProbe returns a readiness check that passes on a 200 from url.
func healthProbe(url, token string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: status %d, want 200", url, resp.StatusCode)
		}
		return nil
	}
}
