# cyclerd agent: one app host of the service "web".
#
# Install as /etc/cycler/agent.hcl (owner root:cycler, mode 0640) and check it:
#   cyclerd config check -role agent /etc/cycler/agent.hcl
#
# Placeholders, filled in per host (deploy/vagrant/provision.sh does it with sed):
#   @NODE_ID@  this host's name, also the Consul instance id (web-blue-1)
#   @NODE_IP@  this host's private IP                        (192.168.56.31)
#   @POOL@     blue or green
# Every key is documented in docs/config.md.

node_id     = "@NODE_ID@"
instance_id = "@NODE_ID@"
data_dir    = "/var/lib/cycler-agent"

log {
  level  = "info"
  format = "json"
}

api {
  # The leader calls the agent here (install, hide, unhide, inventory).
  listen = "@NODE_IP@:7401"

  # Servers present this secret (their agent_token_file).
  token "servers" {
    secret_file = "/etc/cycler/tokens/agent-api"
    scopes      = ["agent"]
  }
}

consul {
  address = "127.0.0.1:8500"
}

# Any server will do; the agent downloads package blobs from them.
servers = [
  "192.168.56.11:7400",
  "192.168.56.12:7400",
  "192.168.56.13:7400",
]
# The servers accept this secret as their "fleet" token.
server_token_file = "/etc/cycler/tokens/fleet"

service = "web"
pool    = "@POOL@"
address = "@NODE_IP@"
port    = 8080

keep_releases   = 5
install_timeout = "10m"

app {
  # No restart_command: the agent runs the package's start command and
  # supervises it. The app keeps running across agent restarts (the unit
  # has KillMode=process) and the next agent adopts it.
  stop_timeout   = "10s"
  health_timeout = "30s"
  check_interval = "2s"
}
