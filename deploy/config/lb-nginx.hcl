# cyclerd lb for nginx in dynamic mode (libnginx-mod-http-lua and
# lua-resty-core): switches go through a loopback admin location, with no
# reload. nginx runs with /etc/cycler/nginx/nginx.conf (deploy/config/nginx.conf)
# under the unit cycler-nginx.service, as the same user as cyclerd, so that
# cyclerd can run `nginx -t` and reload it when its files change.
#
# Install as /etc/cycler/lb-nginx.hcl; it runs as cyclerd-lb@nginx.service.
#   cyclerd config check -role lb /etc/cycler/lb-nginx.hcl
# Every key is documented in docs/config.md.

lb_id    = "lb-nginx"
services = ["web"]
min_live = 1

verify_interval = "15s"

log {
  level  = "info"
  format = "json"
}

api {
  # Two cyclerd lb run on the lab's LB host: this one on 7402, varnish's on 7403.
  listen = "127.0.0.1:7402"

  # Operators read /v1/lb/status with this token.
  token "ops" {
    secret_file = "/etc/cycler/tokens/ops"
    scopes      = ["operator"]
  }
}

consul {
  address = "127.0.0.1:8500"
}

driver "nginx" {
  mode        = "dynamic"
  binary      = "/usr/sbin/nginx"
  config_dir  = "/etc/nginx/cycler"
  main_config = "/etc/cycler/nginx/nginx.conf"

  admin_addr        = "127.0.0.1:8081"
  admin_secret_file = "/etc/cycler/tokens/nginx-admin"

  service "web" {
    listen = "0.0.0.0:80"
  }
}

# Servers run the bake checks through this URL.
frontend "web" {
  url = "http://192.168.56.20:80"
}
