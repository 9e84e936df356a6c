# cyclerd lb for varnish: one varnishd per service. varnishd boots with
# /etc/cycler/varnish/boot.vcl (deploy/config/varnish-boot.vcl) under the unit
# cycler-varnish.service; cyclerd loads its own VCL through the CLI (-T, -S).
#
# Install as /etc/cycler/lb-varnish.hcl; it runs as cyclerd-lb@varnish.service.
#   cyclerd config check -role lb /etc/cycler/lb-varnish.hcl
# Every key is documented in docs/config.md.

lb_id    = "lb-varnish"
services = ["web"]
min_live = 1

verify_interval = "15s"

log {
  level  = "info"
  format = "json"
}

api {
  listen = "127.0.0.1:7403"

  token "ops" {
    secret_file = "/etc/cycler/tokens/ops"
    scopes      = ["operator"]
  }
}

consul {
  address = "127.0.0.1:8500"
}

driver "varnish" {
  admin_addr  = "127.0.0.1:6082"
  secret_file = "/etc/cycler/varnish/secret"
  vcl_dir     = "/etc/varnish/cycler"
  keep_vcls   = 2
  # Caching rules; the lab's passes every request (see varnish-site.vcl).
  include       = "/etc/cycler/varnish/site.vcl"
  ban_on_switch = true
}

frontend "web" {
  url = "http://192.168.56.20:6081"
}
