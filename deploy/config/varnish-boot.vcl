vcl 4.1;

# The VCL varnishd boots with (-f): varnishd needs one to start. cyclerd lb
# loads its own VCL (backends, director, generation markers, then
# varnish-site.vcl) through the CLI and makes it active; until then every
# request gets a 503.

backend default none;

sub vcl_recv {
    return (synth(503, "cycler: no backend set applied yet"));
}
