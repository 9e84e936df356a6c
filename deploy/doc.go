// Package deploy holds no code. Its directory ships what running cycler on
// real hosts needs: example configs for every role (config/), hardened
// systemd units (systemd/), the Vagrant lab's Consul configs (consul/) and
// provisioning scripts (vagrant/). Its tests load every example config with
// the real config package, check each unit's command line against cyclerd's
// real flags, and check the files nginx, varnish and Consul read with those
// programs when they are installed. See docs/operations.md.
package deploy
