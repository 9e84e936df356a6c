# cyclerd agent configuration for one app server of the "web" service.
#
# Check the file with:  cyclerd config check -role agent /etc/cycler/agent.hcl

node_id  = "web-07"
data_dir = "/var/lib/cycler-agent"

log {
  level  = "info"
  format = "json"
}

api {
  listen = "10.0.1.7:7401"

  # The leader calls the agent with this token.
  token "servers" {
    secret = "3b1f7c2e9a4d8f60b5e2c7a1"
    scopes = ["agent"]
  }
}

consul {
  address = "127.0.0.1:8500"
}

# cyclerd servers; any one of them will do.
servers = [
  "10.0.0.11:7400",
  "10.0.0.12:7400",
  "10.0.0.13:7400",
]

# Agent-scope token for calling the servers (or server_token = "...").
server_token_file = "/etc/cycler/tokens/fleet"

# The app instance this agent registers in Consul.
service     = "web"
pool        = "blue"          # blue | green
# instance_id defaults to "<service>-<node_id>", here "web-web-07".
instance_id = "web-07"
address     = "10.0.1.7"
port        = 8080

# Old releases kept on disk besides the live, standby and last good ones.
keep_releases = 5

app {
  # Restart through systemd. Leave out to let the agent run the
  # package's start command itself.
  restart_command = ["systemctl", "restart", "web.service"]
  stop_timeout    = "10s"
  health_timeout  = "30s"
}
