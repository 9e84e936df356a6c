// Package version reports the build's version, so that `cyclerd version`,
// `cyclerctl version` and the API agree on one value.
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is set at link time with
// -ldflags "-X github.com/cyclerhq/cycler/version.Version=v1.2.3".
// When unset, Get falls back to the module version recorded by `go install`.
var Version = ""

// Info describes a binary's build.
type Info struct {
	// Version is the release version, or "devel" for a local build.
	Version string `json:"version"`
	// Revision is the VCS revision when the build recorded one.
	Revision string `json:"revision,omitempty"`
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string `json:"go_version"`
}

// Get returns this binary's build information.
func Get() Info {
	info := Info{Version: Version, GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				info.Revision = s.Value
			}
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	return info
}

// String renders the info on one line, for `version` commands.
func (i Info) String() string {
	s := i.Version
	if i.Revision != "" {
		r := i.Revision
		if len(r) > 12 {
			r = r[:12]
		}
		s += " (" + r + ")"
	}
	return s + " " + i.GoVersion
}
