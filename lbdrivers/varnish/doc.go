// Package varnish is the varnish LB driver: it switches a varnishd to the
// backend set of a generation by loading a new VCL, and reads the set back
// from varnishd to prove the switch.
//
// # Switching
//
// Apply renders a VCL 4.1 program: one backend per instance, named b_<first 16
// hex digits of SHA-256(id, host:port)> so any ID yields a valid identifier,
// with the address checked by lbdrivers.Backend.Validate first (IPv6 written
// as .host = "fd00::1"); a directors.round_robin() over them; an optional
// probe (starting healthy, so a switch does not answer 503 while the first
// probes run); and GenerationPath, answered by varnish itself with the
// generation. The operator's own VCL (Options.Include) is included last.
//
// The file goes to Options.VCLDir (atomically), then `vcl.load
// cycler_<gen>_<n> <file>` compiles it and `vcl.use` makes it active. A VCL
// that does not compile leaves the active one in place; the error carries the
// compiler's messages. Afterwards all but the newest Options.KeepVCLs cycler
// VCLs are discarded (never the active one) and their files removed. n counts
// loads of one generation, for the case of a set that changes within a
// generation.
//
// The same generation and set as the active VCL (compared with vcl.show, i.e.
// with what varnishd loaded) loads nothing. An empty set (ErrEmptySet),
// hostile addresses and a generation older than the active VCL's
// (ErrStaleGeneration) are refused before anything is loaded.
//
// # Caching across switches
//
// varnish is a cache, so a switch of backends alone would leave objects
// fetched from the old pool in the cache, and varnish would go on serving
// them: the LB would ack generation N while answering with the content of
// N-1 (invariant 2). With Options.BanOnSwitch (default on; config key
// ban_on_switch) every generation starts with an empty cache, in two steps:
//
//   - the VCL puts the generation into every object's hash (sub vcl_hash,
//     hash_data("cycler-generation-<gen>")), so a request routed by
//     generation N never hits an object of another generation, nor waits on
//     a fetch begun under one. This is what makes it exact: a ban spares
//     objects inserted after it, such as a miss that was already fetching
//     from the old pool when vcl.use ran;
//   - after vcl.use of a new generation the driver issues `ban obj.status
//     != 0`, so the ban lurker frees the old objects instead of leaving them
//     to expire. A failed ban is logged and does not fail the switch,
//     because the hash already keeps the old objects out of reach.
//
// A new VCL within the same generation (an instance left the live pool)
// keeps the cache: all of it came from the live pool. Turn the option off
// only when every pool serves the same content for a URL (static assets
// that do not change between releases); the cache then survives switches.
//
// # Read-back
//
// Applied takes the active VCL from `vcl.list -j` and the generation from
// its name, the backends varnishd holds for it from `backend.list -j
// <vcl>.*`, and their addresses from `vcl.show <vcl>` (backend.list reports
// no addresses). Before the first Apply the active VCL is not a cycler VCL
// and Applied returns generation 0 and no backends.
//
// # The CLI protocol
//
// The driver speaks varnishd's management protocol (varnish-cli(7)) itself
// instead of running varnishadm. A switch is five to eight commands; with
// varnishadm each would fork a process that connects and authenticates again,
// and varnishadm joins its arguments with spaces, so quoting would have to be
// done anyway. The protocol is small: authenticate once per Apply (SHA-256 of
// the challenge and the -S secret file), then send a line and read a 13-byte
// "status length" header and the body. Every call is bounded by ctx (its
// deadline is the connection's, and cancelling it unblocks I/O), status codes
// come back exactly (CLIError), and no process is started. So the config's
// varnishadm path is not needed by the driver.
//
// # Limits
//
// One varnishd per Driver: the driver's VCL is the whole program, so a
// varnishd fronts one service. Admin health set with backend.set_health on
// names without a VCL prefix reaches only the active VCL; whoever sets it
// must set it again after each switch.
package varnish
