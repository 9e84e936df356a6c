package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/cycle"
)

// waitHelp is the part of deploy's and rollback's help about waiting and
// exit codes.
const waitHelp = `
The command waits for the cycle to end. Ctrl-C stops waiting, not the cycle
(stop it with cyclerctl abort). --timeout, when given, bounds the whole
command including the wait, and 0 means no limit; without it the command
waits as long as the cycle runs.

With --follow it shows the progress: one redrawn line on a terminal, one line
per change otherwise (on stderr with --json). It always ends with a summary,
or with the final cycle as JSON with --json.

Exit codes: 0 live, 1 other error, 2 refused (nothing changed),
3 aborted before the switch, 4 rolled back after the switch.`

func newDeployCmd(g *globals) *cobra.Command {
	var (
		service                 string
		follow, force, atWindow bool
	)
	cmd := &cobra.Command{
		Use:   "deploy FILE|DIGEST",
		Short: "Deploy a package to the hidden pool, switch to it and wait until it is live, aborted or rolled back",
		Long: `Deploy starts a blue/green cycle: the hidden pool is installed with the
package and smoke-tested, then every LB switches to it and it bakes.

FILE is a package .tar.gz: it is pushed first, exactly as cyclerctl package
push does. DIGEST is a package already pushed, sha256:<64 hex digits> (see
cyclerctl package list). The service is the package's name unless --service
says otherwise.
` + waitHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cancel, err := g.cycleContext(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			digest, err := g.deployDigest(cmd, args[0])
			if err != nil {
				return err
			}
			// One request id for every retry of g.call, so a retry after a
			// lost answer or a leader change gets the cycle the first
			// attempt created instead of a refusal by its lock.
			req := cycle.StartRequest{Service: service, Digest: digest, Force: force, AtWindow: atWindow, RequestID: newRequestID()}
			var ans startAnswer
			if err := g.call(cmd, http.MethodPost, "/v1/cycles", req, &ans); err != nil {
				return startError("deploy", err)
			}
			if ans.Staged {
				return g.printStaged(req, ans)
			}
			return g.awaitCycle(cmd, ans.Cycle, follow)
		},
	}
	f := cmd.Flags()
	f.StringVar(&service, "service", "", "the service to deploy to (default: the package's name)")
	f.BoolVar(&follow, "follow", false, "show the cycle's progress while waiting")
	f.BoolVar(&force, "force", false, "start outside the deploy windows (never through a freeze or an open breaker); recorded in the audit trail")
	f.BoolVar(&atWindow, "at-window", false, "stage the package for the service's next deploy window instead of starting now")
	return cmd
}

func newRollbackCmd(g *globals) *cobra.Command {
	var follow, force bool
	cmd := &cobra.Command{
		Use:   "rollback SERVICE",
		Short: "Make SERVICE's previous version live again and wait until it is",
		Long: `Rollback makes the previous version of SERVICE live again: by switching to
the standby pool when it is still warm on that version, else by deploying the
previous package as a new cycle. SERVICE is required: a rollback moves live
traffic, so cyclerctl never guesses which service is meant.
` + waitHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cancel, err := g.cycleContext(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			var c cycle.Cycle
			path := "/v1/services/" + url.PathEscape(args[0]) + "/rollback"
			req := cycle.RollbackRequest{Force: force, RequestID: newRequestID()}
			if err := g.call(cmd, http.MethodPost, path, req, &c); err != nil {
				return startError("rollback of "+args[0], err)
			}
			return g.awaitCycle(cmd, c, follow)
		},
	}
	cmd.Flags().BoolVar(&follow, "follow", false, "show the cycle's progress while waiting")
	cmd.Flags().BoolVar(&force, "force", false, "start outside the deploy windows (never through a freeze or an open breaker); recorded in the audit trail")
	return cmd
}

// startAnswer is the answer to POST /v1/cycles: the new cycle, or for
// --at-window the staged package and the next fire of each deploy-staged
// schedule (orchestrator.StageResult).
type startAnswer struct {
	cycle.Cycle
	Staged  bool         `json:"staged,omitempty"`
	Digest  string       `json:"digest,omitempty"`
	Version string       `json:"version,omitempty"`
	Next    []stagedNext `json:"next,omitempty"`
}

// stagedNext is the next fire of one deploy-staged schedule.
type stagedNext struct {
	Schedule string    `json:"schedule"`
	At       time.Time `json:"at"`
	Local    string    `json:"local"`
}

// newRequestID returns a random id that makes a cycle start idempotent.
func newRequestID() string {
	return rand.Text()
}

// startError explains a cycle start the server did not accept. A refusal
// exits cycle.ExitRefused with the server's reason.
func startError(what string, err error) error {
	var ae *api.Error
	if errors.Is(err, api.ErrRefused) && errors.As(err, &ae) {
		return &exitError{code: cycle.ExitRefused, err: fmt.Errorf("%s refused, nothing changed: %s", what, ae.Message)}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// printStaged reports a package staged for the next deploy window.
func (g *globals) printStaged(req cycle.StartRequest, ans startAnswer) error {
	svc := ans.Service
	if svc == "" {
		svc = req.Service
	}
	digest := ans.Digest
	if digest == "" {
		digest = req.Digest
	}
	if g.json {
		return g.printJSON(map[string]any{"staged": true, "service": svc, "digest": digest, "version": ans.Version, "next": ans.Next})
	}
	if svc == "" {
		svc = "its service"
	}
	fmt.Fprintf(g.stdout, "staged %s for the next deploy window of %s; nothing changes until then\n", digest, svc)
	for _, n := range ans.Next {
		fmt.Fprintf(g.stdout, "  schedule %s fires next at %s\n", n.Schedule, n.Local)
	}
	return nil
}

// deployDigest pushes arg first when it is a file, and returns the digest
// to deploy.
func (g *globals) deployDigest(cmd *cobra.Command, arg string) (string, error) {
	_, statErr := os.Stat(arg)
	if statErr == nil {
		out, m, err := g.pushPackage(cmd, arg)
		if err != nil {
			return "", err
		}
		w := g.stdout
		if g.json {
			w = g.stderr // stdout carries only the final cycle
		}
		g.describePush(w, out, m)
		return out.Digest, nil
	}
	if !strings.HasPrefix(arg, "sha256:") && !errors.Is(statErr, fs.ErrNotExist) {
		return "", fmt.Errorf("deploy: %w", statErr)
	}
	return parseDigest(arg)
}

// parseDigest checks that s is a package digest, sha256:<64 lowercase hex>.
func parseDigest(s string) (string, error) {
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return "", fmt.Errorf("deploy: %q is neither a package file nor a digest: there is no such file, and a digest "+
			"looks like sha256:<64 hex digits>; give the path of a package .tar.gz (it is pushed first) "+
			"or the digest of a pushed package (see cyclerctl package list)", s)
	}
	if len(hexPart) != 64 || strings.Trim(hexPart, "0123456789abcdef") != "" {
		return "", fmt.Errorf("deploy: digest %q is malformed: want sha256: followed by 64 lowercase hex digits, got %d characters; "+
			"copy it from cyclerctl package list --json", s, len(hexPart))
	}
	return s, nil
}
