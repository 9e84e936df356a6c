package agent

import "time"

// Wire types of the agent API (/v1/agent/...). Servers relay them to
// cyclerctl unchanged, so they are shared by cyclerd and cyclerctl.

// InstallRequest is the body of POST /v1/agent/install.
type InstallRequest struct {
	// Digest is the package's content address, "sha256:<64 hex digits>".
	Digest string `json:"digest"`
}

// SwitchRequest is the body of POST /v1/agent/switch-local.
type SwitchRequest struct {
	// Release names a release directory on the host, as the inventory
	// lists it ("1.4.2-0123456789ab").
	Release string `json:"release"`
}

// GenerationRequest is the body of POST /v1/agent/hide and /unhide.
type GenerationRequest struct {
	// Generation is the service generation the caller acts for. A request
	// older than the newest generation the agent has seen is refused, so
	// a stale leader cannot flap the instance.
	Generation uint64 `json:"generation"`
}

// Outcome says how an install or a switch ended.
type Outcome string

// Outcomes of an install or switch.
const (
	// OutcomeInstalled: the release is current and the app is healthy.
	OutcomeInstalled Outcome = "installed"
	// OutcomeUnchanged: the release was already current; nothing changed.
	OutcomeUnchanged Outcome = "unchanged"
	// OutcomeFailed: nothing changed, or the change was rolled back.
	OutcomeFailed Outcome = "failed"
)

// Actions recorded in Install.Action.
const (
	// ActionInstall is POST /v1/agent/install.
	ActionInstall = "install"
	// ActionSwitchLocal is POST /v1/agent/switch-local.
	ActionSwitchLocal = "switch-local"
)

// Release is one unpacked package under <data_dir>/releases.
type Release struct {
	// Dir is the directory name: "<version>-<first 12 hex digits of the digest>".
	Dir string `json:"release"`
	// Name and Version come from the package manifest.
	Name    string `json:"name,omitempty"`
	Version string `json:"version"`
	// Digest is the package's "sha256:<hex>"; empty for a directory the
	// agent found on disk without a record of it.
	Digest string `json:"digest,omitempty"`
	// InstalledAt is when the agent unpacked it.
	InstalledAt time.Time `json:"installed_at"`
}

// Install records one install or switch-local and how it ended.
type Install struct {
	// Action is ActionInstall or ActionSwitchLocal.
	Action string `json:"action"`
	// Digest is the requested package (install) or the release's (switch).
	Digest  string  `json:"digest,omitempty"`
	Version string  `json:"version,omitempty"`
	Release string  `json:"release,omitempty"`
	Outcome Outcome `json:"outcome"`
	// Step is the step that failed: fetch, unpack, pre_switch, switch,
	// post_switch, restart, health or register.
	Step string `json:"failed_step,omitempty"`
	// Error says what went wrong and what to do.
	Error string `json:"error,omitempty"`
	// RolledBack is true when `current` had been switched and was put
	// back on the previous release (which was restarted).
	RolledBack bool      `json:"rolled_back,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// InstallResult answers POST /v1/agent/install and /switch-local: the
// record of the attempt and the release current after it.
type InstallResult struct {
	Install
	Current *Release `json:"current"`
}

// Maintenance is the instance's hidden state.
type Maintenance struct {
	// Hidden is true while the instance is in Consul service maintenance.
	Hidden bool `json:"hidden"`
	// Generation is the newest generation a hide or unhide carried.
	Generation uint64 `json:"generation"`
	// Reason is the maintenance reason Consul shows. While an instance
	// stays hidden it keeps the reason of the hide that hid it (Consul
	// cannot change a reason in place without unhiding).
	Reason string `json:"reason,omitempty"`
}

// App modes, in AppStatus.Mode.
const (
	// ModeSupervised: the agent runs the manifest's start command as its child.
	ModeSupervised = "supervised"
	// ModeRestartCommand: app.restart_command restarts the app (systemd and the like).
	ModeRestartCommand = "restart_command"
	// ModeNone: the package has no start command and no restart command is
	// configured; something else serves the port.
	ModeNone = "none"
)

// Health values, in AppStatus.Health.
const (
	HealthPassing = "passing"
	HealthFailing = "failing"
	// HealthUnknown means there is no current release to check.
	HealthUnknown = "unknown"
)

// AppStatus is the application process as the agent sees it.
type AppStatus struct {
	// Mode is ModeSupervised, ModeRestartCommand or ModeNone.
	Mode string `json:"mode"`
	// PID is the supervised process (and its process group), 0 when none.
	PID int `json:"pid,omitempty"`
	// Running is true while the supervised process is alive.
	Running bool `json:"running"`
	// Adopted is true when the process was started by an earlier run of
	// the agent and adopted at start-up.
	Adopted bool `json:"adopted,omitempty"`
	// Restarts counts restarts after the app exited on its own.
	Restarts int `json:"restarts"`
	// Health is the result of a health probe made for this answer.
	Health      string `json:"health"`
	HealthError string `json:"health_error,omitempty"`
}

// Progress is the install or switch under way.
type Progress struct {
	Action    string    `json:"action"`
	Digest    string    `json:"digest,omitempty"`
	Release   string    `json:"release,omitempty"`
	Step      string    `json:"step"`
	StartedAt time.Time `json:"started_at"`
}

// Inventory answers GET /v1/agent/inventory.
type Inventory struct {
	Service  string `json:"service"`
	Instance string `json:"instance"`
	Pool     string `json:"pool"`
	Node     string `json:"node"`
	// Address and Port are where the app is reached.
	Address string `json:"address"`
	Port    int    `json:"port"`
	// Current is the release `current` points at; nil before the first install.
	Current *Release `json:"current"`
	// Previous is the release current was switched away from.
	Previous *Release `json:"previous,omitempty"`
	// Releases lists every release directory on disk, oldest first.
	Releases []Release `json:"releases"`
	App      AppStatus `json:"app"`
	// Maintenance is the hidden state.
	Maintenance Maintenance `json:"maintenance"`
	// ConsulError says why Consul could not be read for this answer.
	ConsulError string `json:"consul_error,omitempty"`
	// LastInstall is the last install or switch that finished.
	LastInstall *Install `json:"last_install,omitempty"`
	// Installing is the install or switch under way, if any.
	Installing *Progress `json:"installing,omitempty"`
}
