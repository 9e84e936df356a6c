# cyclerd server: one member of the 3-server Raft cluster.
#
# Install as /etc/cycler/server.hcl (owner root:cycler, mode 0640) and check it:
#   cyclerd config check -role server /etc/cycler/server.hcl
#
# Placeholders, filled in per host (deploy/vagrant/provision.sh does it with sed):
#   @NODE_ID@  this server's name, unique in the cluster   (cyc-1)
#   @NODE_IP@  this server's private IP                    (192.168.56.11)
#   @JOIN@     API addresses of servers to join, as a list: [] on the first
#              server only (it bootstraps the cluster), ["192.168.56.11:7400"]
#              on the others. See docs/operations.md, "A server cluster".
# Every key is documented in docs/config.md.

node_id  = "@NODE_ID@"
data_dir = "/var/lib/cycler"

# The secret this server presents to agents (inventory, install, hide, unhide).
# Agents accept it as their "servers" token.
agent_token_file = "/etc/cycler/tokens/agent-api"

log {
  level  = "info"
  format = "json"
}

api {
  listen = "@NODE_IP@:7400"

  # Uncomment on any network you do not fully control; cyclerctl then needs
  # --ca-cert, agents need https:// server URLs.
  # tls {
  #   cert_file = "/etc/cycler/tls/server.pem"
  #   key_file  = "/etc/cycler/tls/server-key.pem"
  # }

  # People and CI (cyclerctl). Servers also use it to forward writes to the
  # leader and to fetch package blobs from each other, so every server of the
  # cluster must accept the same operator secret.
  token "ops" {
    secret_file = "/etc/cycler/tokens/ops"
    scopes      = ["operator"]
  }

  # Agents (package downloads) and LBs.
  token "fleet" {
    secret_file = "/etc/cycler/tokens/fleet"
    scopes      = ["agent"]
  }
}

consul {
  # The local Consul client agent. The ACL token comes from CONSUL_HTTP_TOKEN
  # (set in /etc/cycler/cyclerd.env) when token is not set here.
  address = "127.0.0.1:8500"
}

raft {
  bind = "@NODE_IP@:7500"
  join = @JOIN@
}

packages {
  keep = 5
}

# How cycles of the demo service run.
service "web" {
  min_live      = 1
  max_parallel  = 1
  failure_limit = "0"
  drain         = "5s"
  bake_time     = "30s"
  bake_interval = "2s"
  standby       = "keep"

  breaker {
    consecutive_failures = 3
    cooldown             = "10m"
  }

  # Against every hidden host directly, before the switch.
  smoke "health" {
    path    = "/health"
    retries = 2
  }
  smoke "root" {
    path          = "/"
    body_contains = "\"version\""
  }

  # Through every LB's frontend URL, after the switch.
  bake "through-lb" {
    path = "/"
  }
}
