package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/config"
	"github.com/cyclerhq/cycler/logging"
	"github.com/cyclerhq/cycler/version"
)

// roleConfig is what the three role configs share, as the wiring needs it.
type roleConfig interface {
	Validate() error
	SetFromFlag(path string)
}

// override is a flag that overrides one config key.
type override struct {
	flag  string
	path  string // config key path, for "(flag)" in problems
	usage string
	apply func(v string)
}

// startRole parses args for a role (-config plus the overrides) and builds
// the process logger from the result's log block. The flags the user set are
// applied between parsing and validation, so that problems from the file and
// from flags are all reported together. The caller syncs the logger.
func startRole[C roleConfig](role string, args []string, stderr io.Writer,
	load func(path string, overrides ...func(C)) (C, error), overrides func(C) []override,
	logOf func(C) config.Log) (C, *zap.Logger, error) {
	cfg, err := parseRoleFlags(role, args, stderr, load, overrides)
	if err != nil {
		var zero C
		return zero, nil, err
	}
	l := logOf(cfg)
	log, err := logging.New(l.Format, l.Level, stderr)
	if err != nil {
		var zero C
		return zero, nil, err
	}
	return cfg, log, nil
}

// parseRoleFlags is the parsing half of startRole.
func parseRoleFlags[C roleConfig](role string, args []string, stderr io.Writer,
	load func(path string, overrides ...func(C)) (C, error), overrides func(C) []override) (C, error) {
	var zero C
	fs := flag.NewFlagSet("cyclerd "+role, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "path to the "+role+" HCL config file (required)")
	// Flags are declared before the config exists, so each records its raw
	// value and is applied to the config by the load override below.
	set := map[string]*string{}
	for _, o := range overrides(zero) {
		v := new(string)
		set[o.flag] = v
		fs.StringVar(v, o.flag, "", o.usage)
	}
	if err := fs.Parse(args); err != nil {
		return zero, err
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "Usage: cyclerd %s -config FILE [flags]\n", role)
		fs.PrintDefaults()
		return zero, flag.ErrHelp
	}
	seen := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { seen[f.Name] = true })
	cfg, err := load(*path, func(c C) {
		for _, o := range overrides(c) {
			if seen[o.flag] {
				o.apply(*set[o.flag])
				c.SetFromFlag(o.path)
			}
		}
	})
	if err != nil {
		return zero, reportProblems(stderr, *path, err)
	}
	return cfg, nil
}

func reportProblems(stderr io.Writer, path string, err error) error {
	var ps config.Problems
	if errors.As(err, &ps) {
		fmt.Fprintf(stderr, "cyclerd: %s: %d config problem(s):\n%s\n", path, len(ps), ps.Error())
		return errReported
	}
	return err
}

// commonOverrides are the flags every role has.
func commonOverrides(log *config.Log, a *config.API, c *config.Consul) []override {
	return []override{
		{flag: "log-level", path: "log.level", usage: "log level: debug, info, warn or error", apply: func(v string) { log.Level = v }},
		{flag: "log-format", path: "log.format", usage: "log format: json or console", apply: func(v string) { log.Format = v }},
		{flag: "api-listen", path: "api.listen", usage: "API listen address host:port", apply: func(v string) { a.Listen = v }},
		{flag: "consul-addr", path: "consul.address", usage: "Consul agent HTTP address host:port", apply: func(v string) { c.Address = v }},
	}
}

// splitList parses a comma-separated flag value.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// newAPI builds the API listener from the api block: tokens resolved from
// their secrets or files, TLS when configured.
func newAPI(a config.API, node string, log *zap.Logger) (*api.Server, error) {
	cfg := api.Config{Addr: a.Listen, MaxBodyBytes: a.MaxBodyBytes, Logger: log.Named("api"), NodeName: node}
	for _, t := range a.Tokens {
		secret, err := t.ResolvedSecret()
		if err != nil {
			return nil, err
		}
		tok := api.Token{Name: t.Name, Secret: secret}
		for _, s := range t.Scopes {
			tok.Scopes = append(tok.Scopes, api.Scope(s))
		}
		cfg.Tokens = append(cfg.Tokens, tok)
	}
	if a.TLS != nil {
		cfg.TLS = &api.TLSConfig{CertFile: a.TLS.CertFile, KeyFile: a.TLS.KeyFile, ClientCAFile: a.TLS.ClientCAFile}
	}
	srv, err := api.New(cfg)
	if err != nil {
		return nil, err
	}
	return srv, nil
}

// versionBody is the answer of GET /v1/version.
type versionBody struct {
	version.Info
	Node string `json:"node"`
}

// handleVersion registers GET /v1/version for every scope's callers.
func handleVersion(srv *api.Server, node string) {
	h := func(w http.ResponseWriter, _ *http.Request) error {
		return api.WriteJSON(w, http.StatusOK, versionBody{Info: version.Get(), Node: node})
	}
	srv.Handle("GET /v1/version", api.ScopeOperator, h)
}
