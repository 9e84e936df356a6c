package config

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Role names, as given to `cyclerd config check -role`.
const (
	// RoleServer is `cyclerd server`.
	RoleServer = "server"
	// RoleAgent is `cyclerd agent`.
	RoleAgent = "agent"
	// RoleLB is `cyclerd lb`.
	RoleLB = "lb"
)

// ErrUnknownRole is returned by Check for a role other than server, agent
// or lb.
var ErrUnknownRole = errors.New("unknown role")

// roleConfig is what every role struct provides to the shared load code.
type roleConfig interface {
	// origin returns where the struct's values came from.
	origin() *sources
	// check validates every field, without touching the file system.
	check(c *checker)
	// checkFiles checks the files and programs the configuration names.
	checkFiles(c *checker)
}

// Check loads the configuration file at path for role, validates it and
// checks that the files and programs it names are usable on this host
// (secret files readable and long enough, TLS files present, binaries
// installed). It is `cyclerd config check -role R FILE`. Problems are
// returned as Problems; an unknown role wraps ErrUnknownRole.
func Check(role, path string) error {
	var err error
	switch role {
	case RoleServer:
		_, err = loadRole[Server](role, path, DefaultServer, true)
	case RoleAgent:
		_, err = loadRole[Agent](role, path, DefaultAgent, true)
	case RoleLB:
		_, err = loadRole[LB](role, path, DefaultLB, true)
	default:
		return fmt.Errorf("config check: %w %q; use %s, %s or %s", ErrUnknownRole, role, RoleServer, RoleAgent, RoleLB)
	}
	return err
}

// parseRole decodes src over the role's defaults. It returns a nil config
// only on syntax errors; otherwise the config holds every value that
// decoded, and the problems list those that did not.
func parseRole[T any, P interface {
	*T
	roleConfig
}](role, filename string, src []byte, def func() T) (P, Problems) {
	cfg := def()
	p := P(&cfg)
	probs, ok := parseInto(role, filename, src, p, p.origin())
	if !ok {
		return nil, probs
	}
	return p, probs
}

// parseOnly is the Parse* functions: decode, and fail on any problem.
func parseOnly[T any, P interface {
	*T
	roleConfig
}](role, filename string, src []byte, def func() T) (P, error) {
	p, probs := parseRole[T, P](role, filename, src, def)
	if len(probs) > 0 {
		return nil, probs.err()
	}
	return p, nil
}

// loadRole reads, parses and validates a role's file, reporting parse and
// validation problems together. The overrides run between parsing and
// validation, so a flag can supply or fix a value; a parse problem with a
// key a flag then set is dropped, because the flag wins. With files set it
// also checks the files and programs the configuration names.
func loadRole[T any, P interface {
	*T
	roleConfig
}](role, path string, def func() T, files bool, overrides ...func(P)) (P, error) {
	src, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	p, probs := parseRole[T, P](role, path, src, def)
	if p != nil {
		for _, o := range overrides {
			o(p)
		}
		if src := p.origin(); len(src.flags) > 0 {
			kept := probs[:0]
			for _, pr := range probs {
				if !src.flagged(pr.Path) {
					kept = append(kept, pr)
				}
			}
			probs = kept
		}
		c := &checker{src: p.origin()}
		p.check(c)
		if files {
			p.checkFiles(c)
		}
		probs = probs.merge(c.probs)
	}
	if len(probs) > 0 {
		return nil, probs.err()
	}
	return p, nil
}

// validate runs a role's checks and returns its Problems, or nil.
func validate(r roleConfig) error {
	c := &checker{src: r.origin()}
	r.check(c)
	return c.probs.err()
}

// readConfigFile reads a configuration file, refusing anything too large
// to be one.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: reading: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}
	if len(src) > maxFileBytes {
		return nil, fmt.Errorf("config: reading %s: the file is larger than %d bytes; is it the right file?", path, maxFileBytes)
	}
	return src, nil
}
