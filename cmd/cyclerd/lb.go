package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/config"
	"github.com/cyclerhq/cycler/discovery"
	"github.com/cyclerhq/cycler/lb"
	"github.com/cyclerhq/cycler/lbdrivers"
	"github.com/cyclerhq/cycler/lbdrivers/execdriver"
	"github.com/cyclerhq/cycler/lbdrivers/nginx"
	"github.com/cyclerhq/cycler/lbdrivers/varnish"
	"github.com/cyclerhq/cycler/pool"
)

func lbOverrides(c *config.LB) []override {
	if c == nil {
		c = &config.LB{}
	}
	return append(commonOverrides(&c.Log, &c.API, &c.Consul),
		override{flag: "lb-id", path: "lb_id", usage: "this load balancer's id", apply: func(v string) { c.LBID = v }},
	)
}

// runLB runs `cyclerd lb`: it writes the nginx files when the driver is
// nginx, starts one reconciler per service (fed by Consul blocking
// queries), serves GET /v1/lb/status, and registers in Consul as
// cyclerd-lb.
func runLB(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, base, err := startRole("lb", args, stderr, config.LoadLB, lbOverrides, func(c *config.LB) config.Log { return c.Log })
	if err != nil {
		return err
	}
	defer base.Sync() //nolint:errcheck // stderr sync errors are not actionable
	log := base.With(zap.String("lb_id", cfg.LBID))

	consul, err := discovery.NewClient(cfg.Consul)
	if err != nil {
		return err
	}
	drivers, err := newLBDrivers(ctx, cfg, log)
	if err != nil {
		return err
	}
	var recs []*lb.Reconciler
	for _, svc := range cfg.Services {
		r, err := lb.New(lb.Config{
			Service: svc, LBID: cfg.LBID, MinLive: cfg.MinLive, Driver: drivers[svc],
			Store: lb.NewConsulStore(consul), VerifyInterval: cfg.VerifyIntervalDuration(), Logger: log,
		})
		if err != nil {
			return err
		}
		recs = append(recs, r)
	}

	srv, err := newAPI(cfg.API, cfg.LBID, log)
	if err != nil {
		return err
	}
	handleVersion(srv, cfg.LBID)
	handleLBStatus(srv, cfg, recs)

	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// However runWithRegistration returns, stop the reconcilers and then
	// wait for them (defers run last first), so no apply is cut off by the
	// process exiting under it.
	defer wg.Wait()
	defer stop()
	for _, r := range recs {
		wg.Add(2)
		go func() { defer wg.Done(); r.Run(ctx) }()
		go func() { defer wg.Done(); r.Watch(ctx, consul) }()
	}
	log.Info("lb started", zap.Strings("services", cfg.Services), zap.String("driver", cfg.Driver.Name), zap.Int("min_live", cfg.MinLive))
	meta := map[string]string{"lb_id": cfg.LBID, "driver": cfg.Driver.Name, "services": strings.Join(cfg.Services, ",")}
	for _, svc := range cfg.Services {
		// Servers read these to run bake checks through this LB.
		if u := cfg.FrontendURL(svc); u != "" {
			meta["frontend_"+svc] = u
		}
	}
	return runWithRegistration(ctx, cfg.Consul, srv, discovery.Registration{
		Service: pool.ServiceLB, ID: pool.ServiceLB + "-" + cfg.LBID, Meta: meta,
	}, log)
}

// newLBDrivers builds one driver per service with an explicit switch on
// the configured driver. For nginx it first makes sure nginx's files are
// written (see bootstrapNginx).
func newLBDrivers(ctx context.Context, cfg *config.LB, log *zap.Logger) (map[string]lbdrivers.Driver, error) {
	out := make(map[string]lbdrivers.Driver, len(cfg.Services))
	switch cfg.Driver.Name {
	case config.DriverNginx:
		opts, err := nginxOptions(cfg, log)
		if err != nil {
			return nil, err
		}
		if err := bootstrapNginx(ctx, opts, log); err != nil {
			return nil, err
		}
		for _, svc := range cfg.Services {
			o := opts
			o.Service = svc
			d, err := nginx.New(o)
			if err != nil {
				return nil, err
			}
			out[svc] = d
		}
	case config.DriverVarnish:
		v := cfg.Driver.Varnish
		d, err := varnish.New(varnish.Options{
			AdminAddr: v.AdminAddr, SecretFile: v.SecretFile, VCLDir: v.VCLDir,
			KeepVCLs: v.KeepVCLs, Include: v.Include, BanOnSwitch: &v.BanOnSwitch, Logger: log,
		})
		if err != nil {
			return nil, err
		}
		// Validation allows exactly one service with varnish.
		out[cfg.Services[0]] = d
	case config.DriverExec:
		e := cfg.Driver.Exec
		for _, svc := range cfg.Services {
			d, err := execdriver.New(ctx, execdriver.Options{Command: e.Command, Service: svc, Timeout: e.TimeoutDuration(), Logger: log})
			if err != nil {
				return nil, err
			}
			out[svc] = d
		}
	default:
		return nil, fmt.Errorf("lb: driver %q is not built into this cyclerd; use nginx, varnish or exec", cfg.Driver.Name)
	}
	return out, nil
}

// nginxOptions maps the nginx driver block onto the driver's options.
func nginxOptions(cfg *config.LB, log *zap.Logger) (nginx.Options, error) {
	n := cfg.Driver.Nginx
	secret, err := n.ResolvedAdminSecret()
	if err != nil {
		return nginx.Options{}, err
	}
	o := nginx.Options{
		Mode: nginx.Mode(n.Mode), Binary: n.Binary, Prefix: n.Prefix, ConfigDir: n.ConfigDir,
		MainConfig: n.MainConfigPath(), Standalone: n.Standalone, User: n.User,
		AdminAddr: loopbackIP(n.AdminAddr), AdminSecret: secret, ReloadTimeout: n.ReloadTimeoutDuration(),
		Logger: log,
	}
	for _, svc := range cfg.Services {
		o.Services = append(o.Services, nginx.Service{Name: svc, Listen: n.Listen(svc)})
	}
	return o, nil
}

// loopbackIP turns "localhost:port", which the config accepts, into
// "127.0.0.1:port": nginx's admin server must bind an IP, and the driver
// accepts only loopback IPs.
func loopbackIP(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "localhost" {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// bootstrapNginx writes nginx's files (cycler.conf, the lua module or the
// upstream placeholders, and the whole nginx.conf when standalone) if their
// content changed, checks them with `nginx -t`, and then reloads nginx. They
// change only when the services or the driver settings change, so a restart
// of cyclerd lb with the same config touches nothing. cyclerd does not start
// nginx: a standalone nginx not running yet loads the files when started.
func bootstrapNginx(ctx context.Context, o nginx.Options, log *zap.Logger) error {
	changed, err := nginx.Bootstrap(ctx, o)
	if err != nil {
		return err
	}
	if !changed {
		log.Info("nginx config unchanged", zap.String("config_dir", o.ConfigDir))
		return nil
	}
	err = nginx.Reload(ctx, o)
	switch {
	case err == nil:
		log.Info("nginx reloaded with the new config", zap.String("main_config", o.MainConfig))
	case o.Standalone && !nginxRunning(nginx.PIDFile(o)):
		log.Info("nginx config written; nginx is not running yet and loads it when started",
			zap.String("binary", o.Binary), zap.Strings("args", nginx.ForegroundArgs(o)))
	default:
		// The files are valid (nginx -t passed); only the signal failed.
		// The running nginx keeps its old config until it is reloaded.
		log.Warn("nginx config written but not reloaded; reload nginx yourself", zap.Error(err))
	}
	return nil
}

// nginxRunning reports whether the pid file names a live process. `nginx
// -t` leaves an empty pid file behind, so existence alone proves nothing.
func nginxRunning(pidFile string) bool {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// handleLBStatus registers GET /v1/lb/status for operator tokens. Servers
// do not need it (they read acks from Consul KV), so there is no agent route.
func handleLBStatus(srv *api.Server, cfg *config.LB, recs []*lb.Reconciler) {
	srv.Handle("GET /v1/lb/status", api.ScopeOperator, func(w http.ResponseWriter, _ *http.Request) error {
		rep := lb.Report{LBID: cfg.LBID, Driver: cfg.Driver.Name, Services: make([]lb.Status, 0, len(recs))}
		for _, r := range recs {
			rep.Services = append(rep.Services, r.Status())
		}
		return api.WriteJSON(w, http.StatusOK, rep)
	})
}
