# cyclerd lb configuration for an nginx load balancer.
#
# Check the file with:  cyclerd config check -role lb /etc/cycler/lb.hcl

# Name of this load balancer in Consul KV acknowledgements.
lb_id = "lb-1"

log {
  level  = "info"
  format = "json"
}

api {
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

# Services whose live pool this LB routes to.
services = ["web", "api"]

# Never apply fewer backends than this; keep the last good set instead.
min_live = 2

# How often the set is read back from nginx (and put back if nginx lost it).
verify_interval = "15s"

driver "nginx" {
  # dynamic: backends live in a lua_shared_dict, switched with no reload.
  # reload:  render an upstream include, nginx -t, reload.
  mode       = "dynamic"
  binary     = "/usr/sbin/nginx"
  config_dir = "/etc/nginx/cycler"

  # The system nginx.conf includes /etc/nginx/cycler/cycler.conf in its
  # http block. With standalone = true cyclerd writes a complete nginx.conf
  # under prefix instead.
  main_config = "/etc/nginx/nginx.conf"

  # The loopback-only admin server of the cycler lua module.
  admin_addr        = "127.0.0.1:8081"
  admin_secret_file = "/etc/cycler/nginx-admin.secret"

  reload_timeout = "10s"

  # Where nginx serves each service.
  service "web" {
    listen = "0.0.0.0:80"
  }
  service "api" {
    listen = "0.0.0.0:8080"
  }
}

# The URL clients use to reach a service through this LB; servers run the
# service's bake checks through it. Without it, nginx services get
# "http://" + their listen address.
frontend "web" {
  url = "https://www.example.com:443"
}

# A varnish LB (one varnishd per service, so services = ["web"]) would use:
#
# driver "varnish" {
#   admin_addr  = "127.0.0.1:6082"
#   secret_file = "/etc/varnish/secret"
#   vcl_dir     = "/etc/varnish/cycler"
#   keep_vcls   = 2
# }
