// Package harness starts real components (Consul, nginx, varnishd, cyclerd and the
// demo app) for integration tests and for the `make demo` lab. Nothing here is a fake:
// every component is the real binary, started on free loopback ports, with its files
// and logs in the caller's temp dir, and stopped by the caller's Cleanup.
//
// Every function takes a T, which *testing.T satisfies; the lab uses LabT. Start
// functions call t.Fatalf when a component cannot start, after printing the tail of
// its log, so a test reads:
//
//	c := harness.StartConsul(t)
//	app := harness.StartDemoApp(t, harness.DemoAppOptions{Version: "v1", Instance: "web-blue-1", Pool: pool.Blue})
//	ngx := harness.StartNginx(t, harness.NginxOptions{Upstreams: []string{app.Addr}})
//
// ServerConfig, AgentConfig, LBConfig, NginxDriver and VarnishDriver render the
// daemons' HCL configs, so the tests and the lab run the same ones.
//
// Readiness is always a poll of a real endpoint (WaitFor), never a fixed sleep.
//
// Binaries: Consul comes from $CYCLER_CONSUL_BIN or <module root>/.bin/consul; nginx,
// varnishd and varnishadm from $CYCLER_NGINX_BIN, $CYCLER_VARNISHD_BIN and
// $CYCLER_VARNISHADM_BIN or the PATH (plus /usr/sbin). `make deps` installs them all.
// The module's own commands (cyclerd, cycler-demoapp) are built once per process by
// BuildBinary.
//
// A test's temp dir, with every log in it, is removed when the test ends.
// Set CYCLER_TEST_LOGS to a directory to keep a copy of each process's logs
// there (one numbered directory per process).
//
// The package is Linux-only in practice: it reads /proc for child pids and asks the
// kernel to kill children if the test process dies (Pdeathsig).
package harness
