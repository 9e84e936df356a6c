package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pool"
)

// service is the Consul service name of the demo app.
const service = "web"

// lab is everything the lab started.
type lab struct {
	consul  *harness.Consul
	apps    []*harness.DemoApp
	nginx   *harness.Nginx
	varnish *harness.Varnish
}

// startLab starts the components in dependency order. It runs inside LabT.Run, so
// any harness failure ends it through Fatalf.
func startLab(t *harness.LabT, progress func(string, ...any)) *lab {
	l := &lab{}
	progress("starting consul")
	l.consul = harness.StartConsul(t)

	progress("building and starting 4 demo app instances")
	for _, spec := range []struct {
		id string
		p  pool.Pool
	}{{"web-blue-1", pool.Blue}, {"web-blue-2", pool.Blue}, {"web-green-1", pool.Green}, {"web-green-2", pool.Green}} {
		app := harness.StartDemoApp(t, harness.DemoAppOptions{Version: "v1", Instance: spec.id, Pool: spec.p})
		harness.RegisterInstance(t, l.consul.Client(), harness.Instance{
			Service: service, ID: app.Instance, Pool: app.Pool, Version: app.Version, Addr: app.Host, Port: app.Port,
		})
		l.apps = append(l.apps, app)
	}
	var blue []string
	for _, a := range l.apps {
		if a.Pool == pool.Blue {
			blue = append(blue, a.Addr)
		}
	}

	progress("starting nginx and varnish in front of the blue pool")
	l.nginx = harness.StartNginx(t, harness.NginxOptions{Upstreams: blue, LoadLua: true})
	l.varnish = harness.StartVarnish(t, harness.VarnishOptions{Backends: blue})

	progress("waiting for Consul to see every instance passing its health check")
	ids := make([]string, len(l.apps))
	for i, a := range l.apps {
		ids[i] = a.Instance
	}
	harness.WaitPassing(t, l.consul.Client(), service, ids...)
	return l
}

// probe is what one load balancer answered to n requests.
type probe struct {
	name, url string
	answers   []string // "web-blue-1 (v1, blue)" per request
	err       error
}

// probeLBs sends n requests through each load balancer and records who answered.
func probeLBs(ctx context.Context, l *lab, n int) []probe {
	client := &http.Client{Timeout: 5 * time.Second}
	probes := []probe{{name: "nginx", url: l.nginx.URL() + "/"}, {name: "varnish", url: l.varnish.URL() + "/"}}
	for i := range probes {
		for range n {
			who, err := ask(ctx, client, probes[i].url)
			if err != nil {
				probes[i].err = err
				break
			}
			probes[i].answers = append(probes[i].answers, who)
		}
	}
	return probes
}

func ask(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	var a struct{ Version, Instance, Pool string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil {
		return "", fmt.Errorf("status %d, body %.100q", resp.StatusCode, body)
	}
	return fmt.Sprintf("%s (%s, %s)", a.Instance, a.Version, a.Pool), nil
}

// printSummary writes the newcomer's map of the lab.
func printSummary(w io.Writer, l *lab, probes []probe, dir string, removeOnExit bool) {
	fmt.Fprintln(w, "\ncycler lab is up. Everything listens on 127.0.0.1.")

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nCOMPONENT\tROLE\tURL")
	fmt.Fprintf(tw, "consul\tservice discovery (web UI at /ui/)\t%s\n", l.consul.URL())
	for _, a := range l.apps {
		role := "standby, not behind the LBs"
		if a.Pool == pool.Blue {
			role = "LIVE, behind nginx and varnish"
		}
		fmt.Fprintf(tw, "%s\tdemo app %s, %s pool: %s\t%s\n", a.Instance, a.Version, a.Pool, role, a.URL())
	}
	fmt.Fprintf(tw, "nginx\tload balancer in front of the blue pool\t%s\n", l.nginx.URL())
	fmt.Fprintf(tw, "varnish\tload balancer in front of the blue pool\t%s (admin CLI %s)\n", l.varnish.URL(), l.varnish.AdminAddr)
	_ = tw.Flush()

	fmt.Fprintln(w, "\nWho answered real requests through each load balancer just now:")
	for _, p := range probes {
		if p.err != nil {
			fmt.Fprintf(w, "  %-8s error: %v\n", p.name, p.err)
			continue
		}
		fmt.Fprintf(w, "  %-8s %s\n", p.name, strings.Join(p.answers, ", "))
	}

	note := ""
	if removeOnExit {
		note = " (deleted on exit; run with --keep to keep it)"
	}
	fmt.Fprintf(w, "\nFiles and logs are under %s%s:\n", dir, note)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rel := func(p string) string {
		if r, err := filepath.Rel(dir, p); err == nil {
			return r
		}
		return p
	}
	fmt.Fprintf(tw, "  consul\t%s\n", rel(l.consul.LogPath()))
	for _, a := range l.apps {
		fmt.Fprintf(tw, "  %s\t%s\n", a.Instance, rel(a.LogPath()))
	}
	fmt.Fprintf(tw, "  nginx\t%s, %s, %s\n", rel(l.nginx.LogPath()), rel(l.nginx.ErrorLog), rel(l.nginx.AccessLog))
	fmt.Fprintf(tw, "  varnish\t%s\n", rel(l.varnish.LogPath()))
	_ = tw.Flush()

	consul := l.consul.URL()
	fmt.Fprintln(w, "\nTry:")
	for _, e := range [][2]string{
		{"a blue instance answers; see the X-App-* headers", "curl -si " + l.nginx.URL() + "/"},
		{"the same pool through varnish", "curl -s " + l.varnish.URL() + "/"},
		{"every passing instance, with its cycler_pool and cycler_version Meta", "curl -s '" + consul + "/v1/health/service/" + service + "?passing'"},
		{"only the green pool, found by its tag", "curl -s '" + consul + "/v1/catalog/service/" + service + "?tag=" + pool.Tag(pool.Green) + "'"},
		{"varnish's view of its backends", "varnishadm -T " + l.varnish.AdminAddr + " -S " + l.varnish.SecretFile + " backend.list"},
		{"which upstream served each request", "tail -f " + l.nginx.AccessLog},
	} {
		fmt.Fprintf(w, "  # %s\n  %s\n", e[0], e[1])
	}
	fmt.Fprintln(w, "\nnginx and varnish use a static config for now; `cyclerd lb` will drive them from Consul.")
}
