// Package varnish is the varnish LB driver: it switches a varnishd to the
// backend set of a generation, by admin health when it can and by loading
// a new VCL when it must, and reads the set back from varnishd to prove the
// switch.
//
// # The VCL
//
// The driver renders a VCL 4.1 program: one backend per instance, named
// b_<first 16 hex digits of SHA-256(id, host:port)> so any ID yields a valid
// identifier, with the address checked by lbdrivers.Backend.Validate first
// (IPv6 written as .host = "fd00::1"); a directors.round_robin() over all of
// them; an optional probe (starting healthy, so a switch does not answer
// 503 while the first probes run); the generation markers below; and
// GenerationPath, answered by varnish itself with the generation. The
// operator's own VCL (Options.Include) is included last.
//
// A VCL holds the backends of the set it was loaded for and of the set live
// before it (bounded: two sets, so it cannot grow from switch to switch).
// Which of them take traffic is decided by admin health: `backend.set_health
// <vcl>.<backend> healthy` (auto with a probe, so the probe still decides)
// for the live set, sick for the others. The director skips sick backends.
// Names are always qualified with the VCL: unqualified, set_health reaches
// the active VCL only.
//
// # The generation
//
// The generation is not compiled in, so that a flip needs no compile. It is
// held by 97 marker backends, never in the director and never connected to
// (127.0.0.1:9): two banks (cycler_ga<k>, cycler_gb<k>) of 48 bits each and
// a selector (cycler_gsel; sick selects bank a). A bit is 1 when its marker
// is admin healthy. vcl_recv sums the selected bank's bits (std.healthy) into
// the request header x-cycler-generation, which it overwrites on every
// request and vcl_backend_fetch strips from backend requests. The driver
// writes a new generation into the bank VCL does not read and then flips
// the selector, one command: a request reads one whole generation or the
// other, never a mix of bits. VCL integer literals have at most 15 digits,
// hence 48 bits and MaxGeneration.
//
// # Switching
//
// Apply reads the state of the active cycler VCL (vcl.show and backend.list
// -j) and then:
//
//   - the same generation and live set: changes nothing;
//   - every backend of the set is in the active VCL (a blue/green flip): a
//     flip. Admin health first, the live backends healthy before the others
//     go sick, so there is never a moment without a healthy backend; then,
//     for a new generation, the markers and a ban. Nothing is compiled;
//   - otherwise (a new backend, options changed, or no cycler VCL yet): a
//     load. It renders the set plus the live set before, writes it to
//     Options.VCLDir (atomically), `vcl.load cycler_<gen>_<n> <file>`, sets
//     admin health and markers on the new VCL (qualified names) while it is
//     not active, so it never goes live with a hidden backend healthy or a
//     wrong generation, then `vcl.use`. A VCL that does not compile leaves
//     the active one in place; the error carries the compiler's messages.
//     Afterwards all but the newest Options.KeepVCLs cycler VCLs are
//     discarded (never the active one) and their files removed. n counts
//     loads of one generation.
//
// Each switch ends with a read-back from varnishd, which must show the
// generation and set applied. An empty set (ErrEmptySet), hostile
// addresses, a generation above MaxGeneration and one older than varnish's
// (ErrStaleGeneration) are refused before anything changes. A VCL of an
// older cyclerd (the generation compiled in, no markers) is read as such
// and replaced by the next Apply with a load; so is an active cycler VCL
// that cannot be read back (edited by hand), whose name's generation then
// bounds the stale check.
//
// # Caching across switches
//
// varnish is a cache, so a switch of backends alone would leave objects
// fetched from the old pool in the cache, and varnish would go on serving
// them: the LB would ack generation N while answering with the content of
// N-1 (invariant 2). With Options.BanOnSwitch (default on; config key
// ban_on_switch) every generation starts with an empty cache, in two steps:
//
//   - vcl_hash puts the request's generation (x-cycler-generation) into
//     every object's hash, so a request of generation N never hits an object
//     of another generation, nor waits on a fetch begun under one. A flip
//     sets admin health before the generation: a request that reads N does
//     so after the old pool went sick, so every fetch made for a hash of N
//     goes to the new pool, and a fetch from the old pool still running
//     after the flip lands under the old generation's hash, which no
//     request reads again (generations only grow). This is what makes it
//     exact: a ban spares objects inserted after it;
//   - after a switch to a new generation the driver issues `ban obj.status
//     != 0`, so the ban lurker frees the old objects instead of leaving them
//     to expire. A failed ban is logged and does not fail the switch,
//     because the hash already keeps the old objects out of reach.
//
// A switch within the same generation (an instance left the live pool)
// keeps the cache: all of it came from the live pool. Turn the option off
// only when every pool serves the same content for a URL (static assets
// that do not change between releases); the cache then survives switches.
//
// # Read-back
//
// Applied takes the active VCL from `vcl.list -j`, its backends and their
// addresses from `vcl.show <vcl>` (backend.list reports no addresses), and
// from `backend.list -j <vcl>.b_*` and `<vcl>.cycler_g*` the admin health
// of each (admin_health: healthy, sick, or probe for auto): the live set is
// the backends not sick, the generation is what the selected bank holds.
// Before the first Apply the active VCL is not a cycler VCL and Applied
// returns generation 0 and no backends.
//
// # The CLI protocol
//
// The driver speaks varnishd's management protocol (varnish-cli(7)) itself
// instead of running varnishadm. A flip is ten to twenty commands; with
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
// varnishd fronts one service. The driver owns the admin health of the
// backends and markers of its VCLs: an operator who sets it by hand
// (backend.set_health) changes the live set or the generation, which the
// next read-back reports. The markers and the hidden pool make vcl.show and
// backend.list answers longer; with many backends raise varnishd's
// cli_limit (the CLIError says so). The hidden pool's backends are probed
// too when a probe is configured.
package varnish
