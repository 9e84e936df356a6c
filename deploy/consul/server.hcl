# Consul server of the Vagrant lab (one server: bootstrap_expect = 1). Real
# fleets run 3 or 5 Consul servers with ACLs and TLS; see docs/operations.md.
# Placeholders (deploy/vagrant/provision.sh fills them in):
#   @NODE_ID@ @NODE_IP@ @GOSSIP_KEY@ (generated on the host at `vagrant up`)
node_name        = "@NODE_ID@"
datacenter       = "lab"
data_dir         = "/var/lib/consul"
server           = true
bootstrap_expect = 1
bind_addr        = "@NODE_IP@"
advertise_addr   = "@NODE_IP@"
# The HTTP API and UI on loopback and the private network (http://@NODE_IP@:8500/ui).
client_addr      = "127.0.0.1 @NODE_IP@"
encrypt          = "@GOSSIP_KEY@"
log_level        = "INFO"

ui_config {
  enabled = true
}
