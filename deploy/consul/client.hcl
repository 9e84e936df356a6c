# Consul client agent of the Vagrant lab: every cyclerd (server, agent, lb)
# talks to the Consul agent on its own host, at 127.0.0.1:8500.
# Placeholders (deploy/vagrant/provision.sh fills them in):
#   @NODE_ID@ @NODE_IP@ @GOSSIP_KEY@ (generated on the host at `vagrant up`)
node_name      = "@NODE_ID@"
datacenter     = "lab"
data_dir       = "/var/lib/consul"
bind_addr      = "@NODE_IP@"
advertise_addr = "@NODE_IP@"
client_addr    = "127.0.0.1"
retry_join     = ["192.168.56.10"]
encrypt        = "@GOSSIP_KEY@"
log_level      = "INFO"
leave_on_terminate = true
