package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
)

// testAppEnv switches the test binary into a tiny app the agent
// supervises, so that the unit tests need no other binary. Its value is
// the app's behaviour (see runTestApp).
const testAppEnv = "CYCLER_AGENT_TEST_APP"

func TestMain(m *testing.M) {
	for _, arg := range os.Args[1:] {
		if mode, ok := strings.CutPrefix(arg, "-hook-mode="); ok {
			os.Exit(runTestApp(mode))
		}
	}
	if mode := os.Getenv(testAppEnv); mode != "" {
		os.Exit(runTestApp(mode))
	}
	goleak.VerifyTestMain(m)
}

// runTestApp is the app: it serves GET / with its version and GET /health
// on $APP_LISTEN (which the manifest sets to ${CYCLER_ADDR}). Modes:
//
//	serve        healthy
//	fail-health  /health answers 500
//	exit         exits at once with status 3
//	stubborn     healthy, and ignores SIGTERM
//	hook         a hook that succeeds
//	hook-fail    a hook that prints and fails
//	sleep        a hook that sleeps 1.5s
func runTestApp(mode string) int {
	switch mode {
	case "exit":
		return 3
	case "hook":
		fmt.Println("hook ran in", os.Getenv(pkgfile.EnvReleaseDir))
		return 0
	case "hook-fail":
		fmt.Println("migration refused")
		return 1
	case "sleep":
		time.Sleep(1500 * time.Millisecond)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if mode == "stubborn" {
		stop()
		signal.Ignore(syscall.SIGTERM)
		ctx = context.Background() // only SIGKILL ends it
	}
	ln, err := net.Listen("tcp", os.Getenv("APP_LISTEN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	version := os.Getenv(pkgfile.EnvVersion)
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		if mode == "fail-health" {
			http.Error(w, "unhealthy", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, version) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	<-ctx.Done()
	_ = srv.Close()
	return 0
}

// testPackage builds a package of service "web" whose app is this test
// binary in mode, healthy on /health, with the given hooks.
func testPackage(t *testing.T, version, mode string, hooks pkgfile.Hooks) []byte {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m := pkgfile.Manifest{
		Name:    "web",
		Version: version,
		Start:   &pkgfile.Start{Command: []string{self, "-test.run=^$"}, Env: map[string]string{testAppEnv: mode, "APP_LISTEN": "${CYCLER_ADDR}"}},
		Health:  &pkgfile.Health{HTTPPath: "/health", Timeout: 5 * time.Second},
		Hooks:   hooks,
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return pkgtest.Package(t, pkgtest.Manifest(m), pkgtest.Entry{Name: "static/index.html", Body: []byte("<p>" + version + "</p>\n")})
}

// hook is a hook argv that runs this test binary in mode.
func hook(t *testing.T, mode string) []string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{self, "-test.run=^$", "-hook-mode=" + mode}
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// fakeSource serves blobs from memory.
type fakeSource struct {
	name  string
	mu    sync.Mutex
	blobs map[string][]byte
	opens int
}

func newFakeSource(name string) *fakeSource {
	return &fakeSource{name: name, blobs: map[string][]byte{}}
}

// add serves b under its own digest and returns the digest.
func (f *fakeSource) add(b []byte) string {
	d := digestOf(b)
	f.put(d, b)
	return d
}

// put serves b under digest d, whatever b hashes to.
func (f *fakeSource) put(d string, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blobs[d] = b
}

func (f *fakeSource) Name() string { return f.name }

func (f *fakeSource) Open(_ context.Context, digest string) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	b, ok := f.blobs[digest]
	if !ok {
		return nil, fmt.Errorf("package %s: not found", digest)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// fakeRegistry is a Consul agent in memory that, like Consul, keeps a
// service's maintenance mode when the service is registered again.
type fakeRegistry struct {
	mu       sync.Mutex
	services map[string]*consulapi.AgentServiceRegistration
	maint    map[string]string // id -> reason, while in maintenance
	down     bool
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{services: map[string]*consulapi.AgentServiceRegistration{}, maint: map[string]string{}}
}

var errConsulDown = errors.New("consul is down")

func (r *fakeRegistry) Register(_ context.Context, reg *consulapi.AgentServiceRegistration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errConsulDown
	}
	r.services[reg.ID] = reg
	return nil
}

func (r *fakeRegistry) Maintenance(_ context.Context, id string) (bool, bool, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return false, false, "", errConsulDown
	}
	if _, ok := r.services[id]; !ok {
		return false, false, "", nil
	}
	reason, on := r.maint[id]
	return true, on, reason, nil
}

func (r *fakeRegistry) SetMaintenance(_ context.Context, id string, on bool, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errConsulDown
	}
	if _, ok := r.services[id]; !ok {
		return fmt.Errorf("no service %q", id)
	}
	if !on {
		delete(r.maint, id)
	} else if _, already := r.maint[id]; !already {
		r.maint[id] = reason
	}
	return nil
}

// forget drops every registration, as a dev-mode Consul does on restart.
func (r *fakeRegistry) forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.services = map[string]*consulapi.AgentServiceRegistration{}
	r.maint = map[string]string{}
}

func (r *fakeRegistry) service(id string) (*consulapi.AgentServiceRegistration, string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reason, on := r.maint[id]
	if !on {
		reason = ""
	}
	return r.services[id], reason, on
}

// testEnv is an agent on a temp data dir with fakes around it.
type testEnv struct {
	t    *testing.T
	dir  string
	port int
	src  *fakeSource
	reg  *fakeRegistry
	cfg  Config
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	e := &testEnv{t: t, dir: t.TempDir(), port: harness.FreePort(t), src: newFakeSource("fake server"), reg: newFakeRegistry()}
	e.cfg = Config{
		DataDir: e.dir, Service: "web", Pool: "blue", Instance: "web-blue-1", Node: "host-1",
		Address: "127.0.0.1", Port: e.port, KeepReleases: 2,
		StopTimeout: 2 * time.Second, HealthTimeout: 5 * time.Second, CheckInterval: time.Second,
		HookTimeout: 10 * time.Second, InstallTimeout: time.Minute,
		StopWithAgent: true, Sources: []BlobSource{e.src}, Registry: e.reg,
		Limits: pkgtest.SmallLimits(), Logger: zaptest.NewLogger(t),
	}
	return e
}

// start creates and runs an agent on the env's data dir. The Cleanup
// stops it (and, with StopWithAgent, its app).
func (e *testEnv) start() (*Agent, func()) {
	e.t.Helper()
	a, err := New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("agent run: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return a, stop
}

// get fetches the app's GET / body.
func (e *testEnv) get() (string, error) {
	resp, err := probeClient.Get("http://127.0.0.1:" + strconv.Itoa(e.port) + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// wantServing fails unless the app answers version.
func (e *testEnv) wantServing(version string) {
	e.t.Helper()
	got, err := e.get()
	if err != nil || got != version {
		e.t.Fatalf("app answers %q, %v; want %q", got, err, version)
	}
}

// waitUntil polls cond until it holds or 10s pass.
func waitUntil(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pkgtestPackage builds a package holding only manifest m.
func pkgtestPackage(t *testing.T, m pkgfile.Manifest) []byte {
	t.Helper()
	return pkgtest.Package(t, pkgtest.Manifest(m))
}
