# cyclerd server configuration (one of a 3-node cluster).
#
# Every key is shown here; most have defaults and can be left out.
# Check the file with:  cyclerd config check -role server /etc/cycler/server.hcl

# Unique name of this server in the Raft cluster. Defaults to the host name.
node_id  = "cyc-1"

# Raft log, snapshots and uploaded package blobs live here.
data_dir = "/var/lib/cycler"

log {
  level  = "info"   # debug | info | warn | error
  format = "json"   # json | console
}

api {
  # cyclerctl, agents and load balancers talk to this address.
  listen         = "10.0.0.11:7400"
  max_body_bytes = 1073741824   # 1 GiB: package uploads come through here

  tls {
    cert_file      = "/etc/cycler/tls/server.pem"
    key_file       = "/etc/cycler/tls/server-key.pem"
    # client_ca_file = "/etc/cycler/tls/clients-ca.pem"  # require client certificates
  }

  # Operators and CI (cyclerctl).
  token "ops" {
    secret_file = "/etc/cycler/tokens/ops"
    scopes      = ["operator"]
  }

  # Agents and load balancers.
  token "fleet" {
    secret_file = "/etc/cycler/tokens/fleet"
    scopes      = ["agent"]
  }
}

consul {
  address    = "127.0.0.1:8500"
  scheme     = "http"
  datacenter = "dc1"
  # token is read from CONSUL_HTTP_TOKEN when not set here.
}

raft {
  bind      = "10.0.0.11:7500"
  # advertise is needed only when bind is 0.0.0.0 or behind NAT.
  # advertise = "cyc-1.internal:7500"

  # Existing servers to join on first start (API addresses).
  join      = ["10.0.0.12:7400", "https://cyc-3.internal:7400"]
  # Also find peers through the Consul service "cyclerd".
  discover  = true

  timing             = "production"   # "fast" is for tests only
  snapshot_threshold = 8192
  snapshot_retain    = 3
}

packages {
  # Package files, by sha256. Defaults to <data_dir>/packages.
  dir              = "/var/lib/cycler/packages"
  keep             = 5            # newest packages kept per name (live and standby always kept)
  max_upload_bytes = 1073741824   # 1 GiB: the largest package a push accepts
}
