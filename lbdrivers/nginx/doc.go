// Package nginx is the nginx LB driver: it makes one nginx instance route
// each service it fronts to the backend set of a generation, and reads the
// set back from nginx to prove the switch.
//
// # Files
//
// Render and Bootstrap produce, in Options.ConfigDir:
//
//   - cycler.conf, an http-level include: per service an upstream
//     "<svc>_cycler" and a public server { listen <Listen>; location / {
//     proxy_pass ...; } } with HTTP/1.1 keepalive to the backends, plus one
//     admin server on Options.AdminAddr (loopback only, and allow/deny
//     rules that refuse any other client) with a location /cycler/<svc> per
//     service;
//   - cycler_lb.lua (dynamic mode), the balancer and admin code;
//   - <svc>.upstream.conf (reload mode), the service's live upstream.
//
// With Options.Standalone, Bootstrap also writes Options.MainConfig: a complete
// nginx.conf that loads the ndk and lua modules (dynamic mode) and keeps its
// pid file, logs and temp files under Options.Prefix, so the lb role or a
// test can run nginx entirely from the driver's output (ForegroundArgs).
// Without it, the operator's nginx.conf includes cycler.conf in its http block.
// These files change only when the set of services changes; Bootstrap writes
// them atomically, checks them with `nginx -t`, restores them on failure, and
// the caller reloads (Reload). A pool switch never rewrites them.
//
// # Dynamic mode
//
// Each upstream is `server 0.0.0.1:1 down; balancer_by_lua_block {...};
// keepalive N;`. The balancer picks a peer round robin from the set stored in
// lua_shared_dict "cycler" (ngx.balancer.set_current_peer) and allows a few
// retries on other peers. With no set stored it leaves the down placeholder in
// charge, so nginx answers 502 ("no live upstreams") instead of failing in Lua.
//
// Apply PUTs the set to http://AdminAddr/cycler/<svc> and GETs it back; the
// read-back must be byte-for-byte what was PUT. No reload happens, so no
// keepalive connection is dropped (measured on this project's lab: 0 failed
// requests over 40 switches, against 610 of 4,421 with reloads). The shared
// dict survives reloads but not a restart of nginx: after one, Applied
// reports generation 0 and the lb role applies the set again.
//
// The admin body is a line format, not JSON, because Debian ships no lua-cjson
// with libnginx-mod-http-lua and a line format is easy to check strictly:
//
//	cycler-backends 1
//	generation 42
//	backend 10.0.0.1 8080 web-blue-1
//	backend fd00::1 8080 web-blue-2
//
// IDs are percent-escaped (anything outside [A-Za-z0-9._~-]). The Lua side
// refuses a malformed body or an empty set (400), a missing or wrong secret
// (401), and a generation lower than the stored one (409, ErrStaleGeneration),
// so a stale writer cannot roll an LB back. PUTs of one service are serialised
// across workers with a lock key in the dict. A PUT of the stored body changes
// nothing.
//
// GET and PUT both need the secret, which travels in the
// X-Cycler-Admin-Secret header. The rendered config
// holds only base64(SHA-1(secret)); Lua hashes the header the same way and
// compares the digests byte by byte, accumulating differences, so the time it
// takes does not depend on where they differ. ngx.balancer needs IP addresses,
// so dynamic mode refuses hostnames; use reload mode for those.
//
// # Reload mode
//
// Apply renders <svc>.upstream.conf (servers with IPv6 bracketed, every
// address checked with lbdrivers.Backend.Validate first) with a map that
// records the same set in the format above; the admin location returns it,
// so nginx itself reports what it loaded. It writes the file atomically
// (temp file, fsync, rename in the same directory), runs `nginx -t` (argv,
// never a shell; -p and -c from Options), and on failure puts the previous
// file back and returns nginx's output. On success it runs `nginx -s reload`
// and polls the admin location until it reports the new set, bounded by ctx
// and Options.ReloadTimeout; if that fails too the previous file is put back.
// Applied returns what the admin location reports and checks that the include
// on disk says the same (ErrReadBack if not).
//
// A reload starts new workers and asks the old ones to finish their requests
// and exit. worker_shutdown_timeout (Options.WorkerShutdownTimeout, default
// 30s, in the Standalone config; set it yourself otherwise) bounds how long an
// old worker may linger, for example on a long-lived connection: without it,
// old workers, with their old upstreams, can live for hours. Reloads also
// close idle keepalive connections, which is why dynamic mode is the default
// where the lua module is installed (DetectMode).
//
// # Safety
//
// Both modes refuse an empty set (ErrEmptySet), invalid or hostile addresses
// (spaces, braces, semicolons, quotes, newlines: anything that is not an IP
// address or an RFC 1123 hostname), IPv6 zones, ports outside 1-65535 and two
// backends at the same host:port, before anything is rendered or sent; nginx
// keeps its last good set. Apply with the same generation and set changes
// nothing (no reload, no new stored set).
//
// Drivers of different services on one nginx share `nginx -t` and reloads;
// within a process they take turns (per MainConfig). Run one lb role per nginx.
package nginx
