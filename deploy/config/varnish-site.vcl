# Included at the end of every VCL cyclerd lb generates (include in
# lb-varnish.hcl). Put caching rules here. It must not start with a `vcl`
# line and must not set req.backend_hint: cyclerd owns the backends.
#
# The demo app answers with the instance that served the request, so the
# lab passes every request to a backend instead of caching it.

sub vcl_recv {
    return (pass);
}
